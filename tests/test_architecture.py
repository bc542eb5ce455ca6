"""The intended architecture, as tests: every "never" of docs/architecture.md, and no import cycle.

Imports are read from the source (ast), at any depth (a function-level import is still an
arrow), so a new arrow the wrong way fails CI before anyone has to notice it in review.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ("app", "cli", "config", "database", "blobstore", "telemetry", "wsgi", "certs", "video", "content",
           "handlers", "jobs", "models", "web", "wechat", "bench")
FRAMEWORK = {"flask", "werkzeug"}

# (layer, what it must never import, why) — docs/architecture.md, "The layers".
NEVERS = [
    ("models", {*FRAMEWORK, "handlers", "web", "wechat", "jobs", "certs", "database", "config", "app", "cli"},
     "the data model sits at the bottom: it imports nothing above it"),
    ("certs", {*FRAMEWORK, "models", "handlers", "web", "wechat", "jobs", "database", "config", "app", "cli"},
     "certificate rendering and signing are pure: data in, bytes out"),
    ("handlers", {*FRAMEWORK, "web", "wechat", "jobs", "database", "config", "app", "cli"},
     "business flows get a session and values from their caller; no request, no config, no transport"),
    ("video", {*FRAMEWORK, "models", "handlers", "web", "wechat", "jobs", "database", "config", "app", "cli",
               "blobstore"},
     "probing and transcoding are pure: a file in, files out; the job publishes them"),
    ("wechat", {"web", "app", "cli"}, "the WeChat boundary never depends on the page layer"),
    ("blobstore", {*FRAMEWORK, *PROJECT} - {"blobstore"},
     "blob storage is infrastructure: bytes and keys in, bytes and links out, for every layer above"),
    ("jobs", {"web", "app"}, "background work never depends on the page layer"),
]
# Only entry points build the app.
APP_IMPORTERS = {"wsgi.py"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] not in PROJECT and rel.suffix == ".py" and len(rel.parts) > 1:
            continue
        if rel.parts[0] in {"tests", "migrations", ".venv"} or rel.parts[0].startswith("."):
            continue
        name = ".".join(rel.with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def _imports(path: Path, module: str) -> set[str]:
    """Every module this file imports, as dotted names (relative imports resolved)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")[: -node.level] if path.name != "__init__.py" else \
                    module.split(".")[: len(module.split(".")) - node.level + 1]
                base = ".".join([*package, base] if base else package)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


MODULES = _modules()
IMPORTS = {name: _imports(path, name) for name, path in MODULES.items()}


def test_the_walk_sees_the_project() -> None:
    assert {"handlers.learning.watching", "web.training", "wechat.webhook", "jobs.registry", "models.base",
            "certs.render", "database", "app"} <= set(MODULES)


@pytest.mark.parametrize("layer,forbidden,why", NEVERS, ids=[n[0] for n in NEVERS])
def test_nevers(layer: str, forbidden: set[str], why: str) -> None:
    broken = {name: sorted(i for i in imported if i.split(".")[0] in forbidden)
              for name, imported in IMPORTS.items() if name == layer or name.startswith(layer + ".")}
    assert {n: b for n, b in broken.items() if b} == {}, why


def test_nothing_imports_the_app_but_entry_points() -> None:
    importers = {str(MODULES[name].relative_to(ROOT)) for name, imported in IMPORTS.items()
                 if "app" in imported or any(i.startswith("app.") for i in imported)}
    importers = {p for p in importers if not p.startswith("bench/")}  # benches are entry points too
    assert importers <= APP_IMPORTERS


def _project_edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for name, imported in IMPORTS.items():
        targets = set()
        for target in imported:
            # `from handlers import payments` names the module handlers.payments.
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + ".") and target.split(".")[0] in PROJECT:
                targets.add(target)
        edges[name] = targets
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components: any component of two or more nodes is a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return cycles


def test_no_import_cycles() -> None:
    """Over modules (packages' __init__ re-exports excepted, as a package imports its parts)."""
    assert _cycles(_project_edges()) == []


def _feature(module: str) -> str:
    """The unit a newcomer reasons about: a handlers feature package (handlers.payments), else the module."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "handlers" and len(parts) > 2 else module


def test_no_cycles_between_feature_packages() -> None:
    """Features build on each other one way (certificates on payments, schools on learning...):
    two packages that import each other, even through different modules, are one feature in two places."""
    edges: dict[str, set[str]] = {}
    for name, targets in _project_edges().items():
        edges.setdefault(_feature(name), set()).update(_feature(t) for t in targets if _feature(t) != _feature(name))
    assert _cycles(edges) == []


# The boundaries: the only modules that commit (docs/architecture.md, "One request, one job").
COMMITTERS = {"web/boundary.py", "jobs/context.py", "jobs/runner.py", "jobs/queue.py", "wechat/webhook.py"}


def test_only_the_boundaries_commit() -> None:
    """Operations flush, views answer, jobs return: a `.commit()` anywhere else in the layers is a
    second transaction per request or job that the boundary cannot see."""
    committing = set()
    for name, path in MODULES.items():
        if name.split(".")[0] not in {"handlers", "web", "jobs", "wechat"}:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "commit":
                committing.add(str(path.relative_to(ROOT)))
    assert committing <= COMMITTERS
