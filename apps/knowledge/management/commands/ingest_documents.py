import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from apps.knowledge.documents import DuplicateDocument, add_document, check_upload
from apps.knowledge.extraction import ExtractionError

#: Files added per transaction, and documents per progress step of --wait (several embedding groups).
PROGRESS_STEP = 256


class Command(BaseCommand):
    help = (
        "Add files (or every supported file under folders) to the knowledge base; workers on the "
        "'knowledge' queue embed them. --wait processes them here instead."
    )
    #: ``call_command(..., client=LLMClient(...))``: the client --wait embeds with (tests, benchmarks).
    stealth_options = ("client",)

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", type=Path)
        parser.add_argument("--wait", action="store_true", help="Process the documents in this process.")

    def handle(self, *args, paths: list[Path], wait: bool, **options) -> None:
        files = self._files(paths)
        if not files:
            raise CommandError("No files found in: " + ", ".join(map(str, paths)))
        added, skipped = [], 0
        for start in range(0, len(files), PROGRESS_STEP):
            # One commit per step of files, not one per file (each add is a savepoint inside it).
            with transaction.atomic():
                for number, path in enumerate(files[start : start + PROGRESS_STEP], start + 1):
                    self._progress(number, len(files), path.name)
                    try:
                        check_upload(path.name, path.stat().st_size)
                        # --wait: no message for the workers (processed here; the stale sweep is the net).
                        added.append(add_document(name=path.name, data=path.read_bytes(), enqueue=not wait))
                    except (ExtractionError, DuplicateDocument) as problem:
                        skipped += 1
                        self.stderr.write(f"\n  skipped: {problem}")
        self.stdout.write(f"\nAdded {len(added)} documents, skipped {skipped}.")
        if wait:
            self._process([d.pk for d in added], options.get("client"))
            self.stdout.write("\nDone.")
        else:
            self.stdout.write("Queued for the workers (queue 'knowledge').")

    def _process(self, ids: list[int], client) -> None:
        from apps.knowledge.models import Document
        from apps.knowledge.pipeline import process_documents
        from apps.knowledge.tasks import enqueue_document
        from apps.llm.errors import LLMError

        for start in range(0, len(ids), PROGRESS_STEP):
            step = ids[start : start + PROGRESS_STEP]
            self._progress(start + len(step), len(ids), "embedding")
            try:
                done = process_documents(step, client=client)
            except LLMError as error:
                left = ids[start:]
                for pk in left:
                    enqueue_document(pk)
                raise CommandError(
                    f"The embedding provider failed ({error}); the {len(left)} documents not yet embedded "
                    "are queued for the workers (queue 'knowledge')."
                ) from error
            for document in done:
                if document.status != Document.Status.READY:
                    self.stderr.write(f"\n  {document.title}: {document.status}: {document.error_message}")
            taken = {d.pk for d in done}
            for pk in step:
                if pk not in taken:
                    self.stderr.write(f"\n  document {pk}: taken by a worker meanwhile")

    def _files(self, paths: list[Path]) -> list[Path]:
        files: list[Path] = []
        for path in paths:
            if not path.exists():
                raise CommandError(f"{path}: no such file or folder")
            files.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
        return files

    def _progress(self, done: int, total: int, label: str) -> None:
        width = 30
        filled = width * done // total
        line = f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label[:40]:<40}"
        if sys.stdout.isatty():
            self.stdout.write(line, ending="")
        elif done == total or done % max(1, total // 10) == 0:
            self.stdout.write(line.strip())
