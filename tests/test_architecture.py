"""The architecture's rules, checked on the source (README, "Architecture").

- Dependencies point one way: trainer/ never imports falsify/, not even lazily.
- No import circles among module-level imports.
- One owner per format: only the metric store speaks SQL.
- No source file over 500 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("trainer", "falsify")


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


MODULES = _modules()


def _imported(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The project modules an import statement loads (submodules named by `from pkg import sub` included)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in MODULES]
    base = node.module or ""
    if node.level:
        package = module.split(".")
        if MODULES[module].name != "__init__.py":
            package = package[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([base] if base else []))
    subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES]
    return subs + ([base] if len(subs) < len(node.names) and base in MODULES else [])


def import_graph(lazy: bool) -> dict[str, set[str]]:
    """module -> the project modules it imports (module level only, unless `lazy`)."""
    graph = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        nodes = ast.walk(tree) if lazy else tree.body
        deps = {d for n in nodes if isinstance(n, (ast.Import, ast.ImportFrom)) for d in _imported(module, n)}
        graph[module] = {d for d in deps if d != module and not module.startswith(d + ".")}  # the parent package runs first anyway
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_trainer_never_imports_falsify():
    wrong = sorted((m, d) for m, deps in import_graph(lazy=True).items() if m.startswith("trainer")
                   for d in deps if d.startswith("falsify"))
    assert wrong == [], f"trainer/ imports falsify/: {wrong}"


def test_no_import_cycles():
    assert find_cycle(import_graph(lazy=False)) is None


def test_cycle_finder_finds_a_planted_cycle():
    graph = import_graph(lazy=False)
    graph["trainer.files"] = graph["trainer.files"] | {"trainer.train"}  # train -> ... -> files -> train
    cycle = find_cycle(graph)
    assert cycle is not None and "trainer.files" in cycle and "trainer.train" in cycle


def _uses(path: Path, name: str) -> bool:
    """Does the file import the module `name` anywhere (`import name` or `from name import ...`)?"""
    for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(n, ast.Import) and any(a.name == name for a in n.names):
            return True
        if isinstance(n, ast.ImportFrom) and n.module == name:
            return True
    return False


def test_only_the_metric_store_speaks_sql():
    speakers = sorted(str(p.relative_to(ROOT)) for p in MODULES.values() if _uses(p, "sqlite3"))
    assert speakers == ["trainer/monitor/store.py"]


def test_source_files_stay_small():
    sizes = {str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines()) for p in MODULES.values()}
    assert {name: n for name, n in sizes.items() if n > 500} == {}, "split these by job"
