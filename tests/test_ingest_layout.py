"""The ingest package's shape (issue 11): its modules import each other without cycles, and
only correlate/ingest/log.py writes ingest_log."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import correlate.ingest as package

FOLDER = Path(package.__file__).parent
MODULES = {p.stem: p for p in FOLDER.glob("*.py") if p.stem != "__init__"}


def _imports(path: Path) -> set[str]:
    """The package's modules `path` imports (at any level)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("correlate.ingest."):
                out.add(node.module.rsplit(".", 1)[1])
            elif node.module == "correlate.ingest":
                out.update(a.name for a in node.names if a.name in MODULES)
        elif isinstance(node, ast.Import):
            out.update(a.name.rsplit(".", 1)[1] for a in node.names
                       if a.name.startswith("correlate.ingest."))
    return out


def test_the_ingest_modules_import_each_other_without_cycles():
    graph = {name: _imports(path) for name, path in MODULES.items()}
    done, active = set(), []

    def visit(name):
        if name in active:
            raise AssertionError("import cycle: " + " -> ".join(active + [name]))
        if name in done:
            return
        active.append(name)
        for dep in graph.get(name, ()):
            visit(dep)
        active.pop()
        done.add(name)

    for name in graph:
        visit(name)
    assert "pipeline" not in set().union(*graph.values())     # the top: nothing imports it


def test_only_the_log_module_writes_ingest_log():
    writes = re.compile(r"(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+ingest_log\b", re.IGNORECASE)
    writers = sorted(p.relative_to(FOLDER.parent.parent).as_posix()
                     for p in FOLDER.parent.parent.glob("**/*.py")
                     if ".venv" not in p.parts and "tests" not in p.parts
                     and writes.search(p.read_text()))
    assert writers == ["correlate/ingest/log.py"]


def test_callers_keep_ingest_and_expand_paths():
    from correlate.ingest import expand_paths, ingest
    assert callable(ingest) and callable(expand_paths)
