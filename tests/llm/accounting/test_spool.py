"""The request log's spool: whole lines from concurrent callers, nothing lost when a process dies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from apps.llm.accounting.request_log import DatabaseRecorder, replay_spool
from apps.llm.accounting.spool import SpoolFile, record_from_json, record_to_json
from apps.llm.models import LLMRequest, LLMUsageDaily
from tests.llm.accounting.test_request_log import make_record

ROOT = Path(__file__).resolve().parents[3]


def test_a_record_survives_the_round_trip_through_its_line():
    record = make_record(prompt=[{"role": "user", "content": "hi"}], response_text="hello", user_id=7)
    assert record_from_json(record_to_json(record)) == record
    hidden = record_from_json(record_to_json(record, store_text=False))
    assert (hidden.prompt, hidden.response_text) == (None, None) and hidden.cost == record.cost


def test_a_line_of_the_earlier_format_is_still_read():
    """Segments a crashed process left before an upgrade hold ISO times and dashed ids: replay reads them."""
    record = make_record()
    line = json.loads(record_to_json(record))
    line |= {"id": str(record.id), "created_at": record.created_at.isoformat()}
    assert record_from_json(json.dumps(line)) == record


def test_concurrent_appends_are_whole_lines(tmp_path):
    spool = SpoolFile(tmp_path)
    line = json.dumps({"pad": "x" * 3000}) + "\n"  # larger than a pipe's atomic write, as a record can be
    start = threading.Barrier(8)

    def append() -> None:
        start.wait()
        for _ in range(300):
            spool.append(line)

    threads = [threading.Thread(target=append) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    spool.close()
    lines = spool.path.read_text().splitlines(keepends=True)
    assert len(lines) == 2400 and set(lines) == {line}


def test_rotation_sends_later_appends_to_a_new_segment(tmp_path):
    spool = SpoolFile(tmp_path)
    spool.append("one\n")
    left = spool.rotate()
    spool.append("two\n")
    spool.close()
    assert left.read_text() == "one\n" and spool.path.read_text() == "two\n" and left != spool.path


@pytest.mark.django_db(transaction=True)
def test_records_of_a_killed_process_are_replayed(tmp_path):
    """The process dies right after its calls returned: its writer wrote nothing, its spool has everything."""
    spool = tmp_path / "spool"
    child = textwrap.dedent(
        f"""
        import os, sys
        import django
        django.setup()
        from tests.llm.accounting.test_request_log import make_record
        from apps.llm.accounting.request_log import DatabaseRecorder
        recorder = DatabaseRecorder({str(spool)!r}, linger=3600)  # its writer never gets to write
        records = [make_record(feature="killed") for _ in range(25)]
        for record in records:
            recorder.record(record)
        print(" ".join(str(r.id) for r in records), flush=True)
        os._exit(0)  # no flush, no atexit: as abrupt as a kill
        """
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", child], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    ids = set(done.stdout.split())
    assert LLMRequest.objects.count() == 0
    files, rows = replay_spool(spool)
    assert (files, rows) == (1, 25)
    assert {str(i) for i in LLMRequest.objects.values_list("id", flat=True)} == ids
    assert LLMUsageDaily.objects.get().requests == 25
    assert list(spool.glob("*.jsonl")) == []


@pytest.mark.django_db(transaction=True)
def test_segments_rotate_under_steady_traffic_and_all_go_once_written(tmp_path):
    recorder = DatabaseRecorder(tmp_path / "spool", segment_bytes=4000, linger=0.01, batch_size=20)
    start = threading.Barrier(8)
    records = [[make_record() for _ in range(60)] for _ in range(8)]

    def record(mine) -> None:
        start.wait()
        for r in mine:
            recorder.record(r)

    threads = [threading.Thread(target=record, args=(mine,)) for mine in records]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert recorder.flush(60)
    recorder.close()
    assert LLMRequest.objects.count() == 480 and LLMUsageDaily.objects.get().requests == 480
    assert list((tmp_path / "spool").glob("*.jsonl")) == []


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.django_db(transaction=True)
def test_a_forked_child_starts_with_its_own_queue_and_writer(tmp_path):
    recorder = DatabaseRecorder(tmp_path / "spool", linger=3600)
    recorder.record(make_record())  # queued in the parent, not yet written
    pid = os.fork()
    if pid == 0:  # the child: the parent's record is the parent's to write
        ok = not recorder._queue and recorder._thread is None and recorder._spool is None
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert recorder.flush(30) and LLMRequest.objects.count() == 1
    recorder.close()
