"""core/'s rooms and their one-way layers, read from the source (every import, those inside
functions and under TYPE_CHECKING too): a module imports its own subpackage and the layers below
it, never above; no two modules import each other, however far round; core never imports
Streamlit or the dashboard, and ui/ never imports a page."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORE = REPO / "core"
# Lower first. The root holds what every room needs (config, errors, atomic writes, the memory
# budget, devices, checkpoints, paths, the command table); toy/ and classify/ are siblings, and
# neither imports the other. __main__ dispatches to every command, so it sits on top.
LAYERS = {"": 0, "data": 1, "runs": 2, "gan": 3, "toy": 4, "classify": 4, "studies": 5, "__main__": 6}


def _module(path: Path, root: Path = REPO) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _room(module: str) -> str:
    """"core.gan.job" -> "gan"; "core.config" -> ""; "core.__main__" -> "__main__"."""
    parts = module.split(".")
    if len(parts) == 2 and parts[1] == "__main__":
        return "__main__"
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (CORE / parts[1]).is_dir()) else ""


def imports(path: Path) -> set[str]:
    """Every module `path` imports, resolved to a file's module name where it names one
    (`from core.gan import live` -> core.gan.live)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            for alias in node.names:   # `from core.gan import live`: a module, not a name
                sub = f"{node.module}.{alias.name}"
                if (REPO / sub.replace(".", "/")).with_suffix(".py").exists():
                    found.add(sub)
    return found


def core_graph() -> dict[str, set[str]]:
    """{core module: the core modules it imports} (a package's import of its own __init__ left
    out: it holds only a docstring)."""
    graph = {}
    for path in sorted(CORE.rglob("*.py")):
        module = _module(path)
        graph[module] = {m for m in imports(path) if m.split(".")[0] == "core"
                         and m != module and not module.startswith(m + ".")}
    return graph


def back_edges(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for src, targets in graph.items():
        for dst in targets:
            a, b = _room(src), _room(dst)
            if a != b and LAYERS[b] >= LAYERS[a]:
                bad.append(f"{src} ({a or 'root'}) imports {dst} ({b or 'root'})")
    return bad


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle, each once (Tarjan's strongly connected components)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
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


def test_every_core_module_lives_in_a_known_room():
    rooms = {_room(m) for m in core_graph()}
    assert rooms <= set(LAYERS), rooms - set(LAYERS)
    nested = [p for p in CORE.glob("*/*/*.py")]
    assert not nested, f"one level of subpackages only: {nested}"


def test_core_imports_go_down_the_layers_only():
    assert back_edges(core_graph()) == []


def test_no_import_circles_in_core():
    assert circles(core_graph()) == []


def test_core_never_imports_the_dashboard_and_ui_never_imports_a_page():
    for path in CORE.rglob("*.py"):
        wrong = {m for m in imports(path) if m.split(".")[0] in ("streamlit", "ui", "pages")}
        assert not wrong, f"{path.relative_to(REPO)} imports {wrong}"
    for path in (REPO / "ui").rglob("*.py"):
        assert not {m for m in imports(path) if m.split(".")[0] == "pages"}, path


def test_the_checks_catch_what_they_are_for():
    """A made-up back-edge and circle are found (a check that finds nothing proves nothing)."""
    graph = core_graph()
    graph["core.data.phantom"] = graph["core.data.phantom"] | {"core.gan.live"}
    assert back_edges(graph) == ["core.data.phantom (data) imports core.gan.live (gan)"]
    graph["core.gan.live"] = graph["core.gan.live"] | {"core.gan.losses"}
    assert ["core.gan.live", "core.gan.losses"] in circles(graph)
