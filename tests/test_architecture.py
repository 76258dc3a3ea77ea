"""The project's structure, checked from its source with ``ast``: no import cycles, apps layered
one way, settings read in one place per app and never at import time.

Every ``import`` statement counts, wherever it stands: at the top of a module, inside a
function (a function-local import hides a cycle, it does not remove it) or under
``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("apps", "config")


@dataclass(frozen=True)
class Module:
    name: str
    path: Path

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"

    @cache  # noqa: B019 (a handful of modules, kept for the session)
    def tree(self) -> ast.Module:
        return ast.parse(self.path.read_text(encoding="utf-8"), str(self.path))


@cache
def project_modules() -> dict[str, Module]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = Module(name, path)
    return modules


def imported_modules(module: Module) -> Iterator[tuple[str, int]]:
    """(project module, line) for every import statement of ``module``."""
    modules = project_modules()
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    for node in ast.walk(module.tree()):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield from _known(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            for alias in node.names:
                # `from package import module` imports the module; `from module import name` the module.
                submodule = f"{source}.{alias.name}"
                yield from _known(submodule if submodule in modules else source, node.lineno)


def _known(name: str, line: int) -> Iterator[tuple[str, int]]:
    if name in project_modules():
        yield name, line


@cache
def import_graph() -> dict[str, set[str]]:
    return {
        name: {target for target, _ in imported_modules(module)} - {name} for name, module in project_modules().items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None (iterative DFS)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"a"}}) == ["a", "a"]


def test_function_local_imports_are_edges_too():
    # apps.llm.accounting.request_log imports the rollups inside a function.
    assert "apps.llm.accounting.rollups" in import_graph()["apps.llm.accounting.request_log"]


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def _app(module: str) -> str:
    return ".".join(module.split(".")[:2])


# What each app may import from the others: knowledge and demo build on llm, never the reverse.
ALLOWED_APP_DEPENDENCIES = {
    "apps.llm": set(),
    "apps.core": set(),
    "apps.knowledge": {"apps.llm"},
    "apps.demo": {"apps.llm", "apps.knowledge"},
}


def test_apps_depend_on_each_other_one_way_only():
    wrong = []
    for name, module in project_modules().items():
        app = _app(name)
        if app not in ALLOWED_APP_DEPENDENCIES:
            continue
        for target, line in imported_modules(module):
            target_app = _app(target)
            if target.startswith("config") or (
                target_app != app and target_app.startswith("apps.") and target_app not in ALLOWED_APP_DEPENDENCIES[app]
            ):
                wrong.append(f"{module.path.relative_to(ROOT)}:{line} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_every_app_is_known_to_the_layering_rules():
    apps = {_app(name) for name in project_modules() if name.count(".") >= 1 and name.startswith("apps.")}
    assert apps == set(ALLOWED_APP_DEPENDENCIES)


# -- settings --------------------------------------------------------------------------------------------

#: Which module alone reads each app's settings dict.
SETTINGS_READERS = {"LLM": "apps.llm.conf", "KNOWLEDGE": "apps.knowledge.conf"}


def settings_reads(nodes: Iterable[ast.AST]) -> Iterator[tuple[str, int]]:
    """(setting name, line) of each of ``nodes`` that is ``settings.NAME`` or ``getattr(settings, "NAME"...)``."""
    for node in nodes:
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "settings":
            yield node.attr, node.lineno
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) >= 2
            and isinstance(node.args[0], ast.Name)
            and node.args[0].id == "settings"
            and isinstance(node.args[1], ast.Constant)
        ):
            yield str(node.args[1].value), node.lineno


def import_time_nodes(tree: ast.Module) -> Iterator[ast.AST]:
    """What runs when the module is imported: everything but function bodies (decorators,
    default values and class bodies included)."""
    todo: list[ast.AST] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            todo.extend([*node.decorator_list, *node.args.defaults, *filter(None, node.args.kw_defaults)])
            continue
        if isinstance(node, ast.Lambda):
            todo.extend(node.args.defaults)
            continue
        yield node
        todo.extend(ast.iter_child_nodes(node))


def test_each_apps_settings_are_read_by_its_conf_module_only():
    wrong = []
    for name, module in project_modules().items():
        if not name.startswith("apps."):
            continue
        for setting, line in settings_reads(ast.walk(module.tree())):
            reader = SETTINGS_READERS.get(setting)
            if reader is not None and name != reader:
                wrong.append(f"{module.path.relative_to(ROOT)}:{line} reads settings.{setting} (only {reader} may)")
    assert not wrong, "\n".join(wrong)


def test_no_settings_are_read_at_import_time():
    wrong = []
    for name, module in project_modules().items():
        if not name.startswith("apps."):
            continue
        for setting, line in settings_reads(import_time_nodes(module.tree())):
            # Django's documented way to point a foreign key at the user model.
            if setting != "AUTH_USER_MODEL":
                wrong.append(f"{module.path.relative_to(ROOT)}:{line} reads settings.{setting} at import time")
    assert not wrong, "\n".join(sorted(set(wrong)))


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from django.conf import settings\nX = settings.LLM\n", ["LLM"]),
        ("@actor(limit=settings.KNOWLEDGE['T'])\ndef f():\n    pass\n", ["KNOWLEDGE"]),
        ("def f(x=getattr(settings, 'LLM')):\n    pass\n", ["LLM"]),
        ("class A:\n    y = settings.FOO\n", ["FOO"]),
        ("def f():\n    return settings.LLM\n", []),
        ("f = lambda: settings.LLM\n", []),
        ("class A:\n    def f(self):\n        return settings.LLM\n", []),
    ],
)
def test_import_time_reads_are_found(source, expected):
    tree = ast.parse(source)
    assert sorted({setting for setting, _ in settings_reads(import_time_nodes(tree))}) == expected


#: Inside apps/llm, what each layer must not import: lower layers know nothing of higher ones.
LLM_LAYERS_NEVER_IMPORT = {
    "apps.llm.transport": ("pricing", "accounting", "models", "dashboard", "admin", "client"),
    "apps.llm.pricing": ("accounting", "dashboard", "admin", "client"),
    "apps.llm.accounting": ("dashboard", "admin", "client"),
    "apps.llm.dashboard": ("admin", "client"),
}


def test_llm_layers_import_downwards_only():
    wrong = []
    for name, module in project_modules().items():
        layer = next(
            (layer for layer in LLM_LAYERS_NEVER_IMPORT if name == layer or name.startswith(layer + ".")), None
        )
        if layer is None:
            continue
        for target, line in imported_modules(module):
            for forbidden in LLM_LAYERS_NEVER_IMPORT[layer]:
                if target == f"apps.llm.{forbidden}" or target.startswith(f"apps.llm.{forbidden}."):
                    wrong.append(f"{module.path.relative_to(ROOT)}:{line} imports {target}")
    assert not wrong, "\n".join(wrong)
