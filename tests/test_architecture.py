"""The layout holds: data flows one way, stage by stage, with no import cycle.

The import graph is computed from the code (every import, at module level or inside a
function, type-only imports included) and checked against the stages, lowest first.
``python tests/test_architecture.py`` prints it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "konbini_ld"

#: The stages, lowest first: a module may import its own stage and the ones below it.
STAGES = [
    ("ground", {"errors", "vocab", "resources", "urls", "units", "model", "sparql", "lexical"}),
    ("engines", {"engines"}),
    ("mapping", {"mapping"}),
    ("io", {"io"}),
    ("query", {"query"}),
    ("store", {"store"}),
    ("sources", {"sources"}),
    ("pipeline", {"pipeline"}),
    ("apps", {"apps", "fakeapi"}),
    ("api", {"__init__", "__main__", "_entry"}),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def stage(module: str) -> int:
    parts = module.split(".")
    head = parts[1] if len(parts) > 1 else "__init__"
    for i, (_, members) in enumerate(STAGES):
        if head in members:
            return i
    raise AssertionError(f"{module} belongs to no stage")


def imports() -> dict[str, set[str]]:
    """Module → the konbini_ld modules it imports."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        package = name if is_pkg else name.rsplit(".", 1)[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                targets = [prefix] + [f"{prefix}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rsplit(".", 1)[0] if "." in target else ""
                if target and target != name and target.startswith("konbini_ld"):
                    found.add(target)
        graph[name] = found
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_there_is_no_import_cycle() -> None:
    graph = imports()
    # a package may import its own modules (re-exports), and they never import it back
    assert cycles(graph) == []


def test_no_stage_imports_a_stage_above_it() -> None:
    upward = [(a, b) for a, targets in imports().items() for b in targets
              if stage(b) > stage(a) and not b.startswith(a + ".")]
    assert upward == []


def test_modules_stay_small() -> None:
    """One concern a module, under ~600 lines (a count to notice growth by, not to write docstrings to)."""
    allowed: dict[str, str] = {}
    over = {}
    for path in PACKAGE.rglob("*.py"):
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > 600 and module_name(path) not in allowed:
            over[module_name(path)] = n
    assert over == {}


if __name__ == "__main__":
    graph = imports()
    for name in sorted(graph, key=lambda m: (stage(m), m)):
        targets = sorted(graph[name], key=lambda m: (stage(m), m))
        print(f"[{STAGES[stage(name)][0]:>8}] {name} -> {', '.join(t.removeprefix('konbini_ld.') for t in targets)}")
