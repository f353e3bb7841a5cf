"""The package's import graph has no cycles (module-level and function-level imports alike).

Read from the source with ast, so an import inside a function counts as much
as one at the top of a file: hiding a cycle in a function does not break it.
"""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "robustmix"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """robustmix modules imported anywhere in ``path`` (``from . import x`` names module x)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            # The longest robustmix module the name refers to: a.b.c -> a.b.c, else a.b, ...
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imported_modules(p, modules) for p in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_import_graph_has_no_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_sees_function_level_and_relative_imports(tmp_path):
    # The finder itself must be able to fail: a cycle through a function-level import is found.
    pkg = tmp_path / "robustmix"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..a import g\n")
    paths = sorted(pkg.rglob("*.py"))
    global PACKAGE
    saved, PACKAGE = PACKAGE, pkg
    try:
        modules = {module_name(p) for p in paths}
        graph = {module_name(p): imported_modules(p, modules) for p in paths}
    finally:
        PACKAGE = saved
    assert graph["robustmix.a"] == {"robustmix.sub.b"}
    assert graph["robustmix.sub.b"] == {"robustmix.a"}
    assert find_cycle(graph) is not None


def test_the_core_does_not_import_the_paper_package():
    # The paper's reproduction sits on the core, never under it: only the CLI (the top layer,
    # which dispatches to every command) may import robustmix.paper.
    top = {"robustmix", "robustmix.__main__"}
    core = {m: deps for m, deps in import_graph().items()
            if m not in top and not m.startswith(("robustmix.paper", "robustmix.cli"))}
    assert core, "no core modules found"
    offending = {m: sorted(d for d in deps if d.startswith("robustmix.paper")) for m, deps in core.items()}
    assert not {m: d for m, d in offending.items() if d}
