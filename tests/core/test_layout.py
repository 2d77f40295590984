"""The core's layout: packages in data-path order, each importing only those before it, and
no import circle anywhere in ``bridge/`` — counting imports inside functions too, so a
function-level import cannot hide a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

LAYERS = ["contract", "runtime", "store", "inbound", "outbound", "daemon", "conformance",
          "features", "web", "cli"]
"""``bridge``'s packages in the order they may import each other (see ``bridge/__init__``):
a package imports itself and the ones before it. ``inbound`` and ``outbound`` are
siblings: neither imports the other."""
SIBLINGS = {("inbound", "outbound"), ("outbound", "inbound")}
ADAPTERS_MAY_IMPORT = {"contract", "runtime"}


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every ``bridge.*``/``adapters.*`` module *path* imports, at any depth (functions
    included), except under ``if TYPE_CHECKING:`` (never executed)."""
    found: set[str] = set()
    here = _module(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    up = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*up, base] if base else up)
                for alias in child.names:
                    found.add(f"{base}.{alias.name}")
                found.add(base)
            elif isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    # "from bridge.web import feeds" also runs bridge/web/__init__, as importing any module
    # of a package does: that edge to one's own package is not a choice, so not counted.
    ancestors = {".".join(here.split(".")[:i]) for i in range(1, here.count(".") + 1)}
    return {m for m in found if m.split(".")[0] in ("bridge", "adapters")} - ancestors


def _graph(top: str) -> dict[str, set[str]]:
    files = {_module(p): p for p in (ROOT / top).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        # "from bridge.x import y" names a module y or a name in x: keep what is a module.
        graph[name] = {m if m in files else m.rpartition(".")[0]
                       for m in _imports(path)} - {name}
        graph[name] = {m for m in graph[name] if m in files}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        m = stack.pop()
                        on.discard(m)
                        comp.append(m)
                        if m == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_the_cycle_finder_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("top", ["bridge", "adapters"])
def test_no_import_circles(top: str) -> None:
    assert _cycles(_graph(top)) == []


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "bridge" else None


def test_every_module_lives_in_a_layer_package() -> None:
    stray = [m for m in _graph("bridge") if m != "bridge" and _layer(m) not in LAYERS]
    assert stray == [], f"modules outside the layer packages: {stray}"
    assert {p.name for p in (ROOT / "bridge").iterdir()
            if p.is_dir() and (p / "__init__.py").exists()} == set(LAYERS)


def test_packages_import_only_the_ones_before_them() -> None:
    wrong = []
    for module, deps in _graph("bridge").items():
        mine = _layer(module)
        if mine is None:
            continue
        for dep in deps:
            theirs = _layer(dep)
            if theirs is None or theirs == mine:
                continue
            if LAYERS.index(theirs) > LAYERS.index(mine) or (mine, theirs) in SIBLINGS:
                wrong.append(f"{module} imports {dep}")
    assert wrong == []


def test_adapters_import_only_the_contract_and_runtime() -> None:
    wrong = []
    for path in (ROOT / "adapters").rglob("*.py"):
        for dep in _imports(path):
            if dep.startswith("bridge.") and _layer(dep) not in ADAPTERS_MAY_IMPORT:
                wrong.append(f"{_module(path)} imports {dep}")
    assert wrong == []


@pytest.mark.parametrize("package", LAYERS)
def test_each_package_says_what_it_owns_and_may_import(package: str) -> None:
    doc = ast.get_docstring(ast.parse((ROOT / "bridge" / package / "__init__.py").read_text()))
    assert doc and "May import" in doc
