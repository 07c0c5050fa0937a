"""The package's import graph, read from the source with `ast`: imports point down the layers
and there is no circle, counting imports inside functions too (a lazy import is still an arrow).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sg2_container", "stylegan2_ops")

# Rooms from the ground floor up; a room imports only itself and rooms of lower floors, never
# a neighbour on its own floor. (pkg) is sg2_container/__init__.py (the version).
FLOORS = [
    {"(pkg)", "errors"},
    {"io", "options"},
    {"stylegan2_ops"},
    {"runtime", "models"},
    {"data"},
    {"inference"},
    {"metrics"},  # the training loop computes metrics at snapshots
    {"training"},
    {"serving", "pipeline"},
    {"sagemaker"},
    {"cli"},
]
FLOOR = {room: level for level, rooms in enumerate(FLOORS) for room in rooms}


def _module_files() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


MODULES = _module_files()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str, path: Path) -> list[tuple[str, bool]]:
    """(imported project module, at module level?) for every import statement in `path`."""
    found: list[tuple[str, bool]] = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def resolve(name: str) -> str:
        # `from pkg import sub` names a submodule when one exists, else the package itself.
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        return name

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.split(".")[0] in PACKAGES:
                        found.append((resolve(alias.name), top))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                if base.split(".")[0] not in PACKAGES:
                    continue
                for alias in child.names:
                    target = f"{base}.{alias.name}"
                    found.append((resolve(target) if target in MODULES else resolve(base), top))
            inner = top and not isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
            )
            visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), True)
    return [(name, top) for name, top in found if name and name != module]


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def room(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "stylegan2_ops":
        return "stylegan2_ops"
    return parts[1] if len(parts) > 1 else "(pkg)"


def _edges(module_level_only: bool = False):
    for module, imports in GRAPH.items():
        for target, top in imports:
            if top or not module_level_only:
                yield module, target


def _find_cycle(edges) -> list[str] | None:
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = dfs(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = dfs(node)
            if cycle:
                return cycle
    return None


def test_the_graph_sees_the_package():
    """Guards the parser: a known lazy import and a known module-level import are found."""
    assert len(MODULES) > 50
    assert ("sg2_container.models.reference_pickle", False) in GRAPH["sg2_container.models.files"]
    assert ("stylegan2_ops._backend", True) in GRAPH["stylegan2_ops.bias_act"]
    assert _find_cycle([("a", "b"), ("b", "c"), ("c", "a")]) == ["a", "b", "c", "a"]
    assert _find_cycle([("a", "b"), ("a", "c"), ("b", "c")]) is None


def test_every_room_has_a_floor():
    assert {room(m) for m in MODULES} <= set(FLOOR), "add the new room to FLOORS"


def test_no_import_circle_anywhere():
    """Counting imports inside functions: a lazy import only hides a circle."""
    assert _find_cycle(_edges()) is None, " -> ".join(_find_cycle(_edges()) or [])


def test_no_import_circle_among_the_ops_at_module_level():
    ops = [(a, b) for a, b in _edges(module_level_only=True) if room(a) == room(b) == "stylegan2_ops"]
    assert ops, "the ops import each other at module level; the parser found no such import"
    assert _find_cycle(ops) is None


def test_imports_point_down_the_floors():
    upward = sorted(
        f"{a} -> {b}" for a, b in _edges() if FLOOR[room(b)] > FLOOR[room(a)]
        or (FLOOR[room(b)] == FLOOR[room(a)] and room(a) != room(b))
    )
    assert upward == []


@pytest.mark.parametrize(
    ("imported", "allowed_from"),
    [
        ("cli", {"cli"}),
        ("sagemaker", {"sagemaker", "cli"}),
        ("training", {"training", "sagemaker", "cli", "serving", "pipeline"}),
    ],
)
def test_who_may_import_a_room(imported, allowed_from):
    offenders = sorted(
        f"{a} -> {b}" for a, b in _edges() if room(b) == imported and room(a) not in allowed_from
    )
    assert offenders == []


def test_the_ops_import_nothing_of_sg2_container():
    offenders = [f"{a} -> {b}" for a, b in _edges()
                 if room(a) == "stylegan2_ops" and b.startswith("sg2_container")]
    assert offenders == []
