"""The import graph of lesseg shows its layers: no module imports itself back through others (every import
counts, inside functions too), the shared stages never import a method or the registry, and the predictor
knows neither methods nor stages."""

import ast
from pathlib import Path

import lesseg

ROOT = Path(lesseg.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the lesseg modules it imports (``from a.b import c`` is ``a.b.c`` when that is a module)."""
    modules = _modules()

    def resolve(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                targets = [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            found |= {resolve(t) for t in targets if t.startswith("lesseg")}
        graph[name] = found - {name, ""}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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


def test_the_import_graph_has_no_circle():
    graph = import_graph()
    assert len(graph) > 80 and "lesseg.methods.picie.stages" in graph  # it did walk the package
    assert cycles(graph) == []


def test_layers():
    graph = import_graph()
    upward = {"lesseg.methods", "lesseg.registry", "lesseg.api", "lesseg.cli"}

    def reaches(module: str, banned: set[str]) -> list[str]:
        return sorted(t for t in graph[module] if any(t == b or t.startswith(b + ".") for b in banned))

    for module in graph:
        if module.startswith("lesseg.stages"):
            assert reaches(module, upward) == [], module  # stages take the method from the run context
    assert reaches("lesseg.predict", {"lesseg.methods", "lesseg.stages", "lesseg.registry"}) == []
    assert reaches("lesseg.config", {"lesseg.methods", "lesseg.stages"}) == []
    assert reaches("lesseg.pipeline", {"lesseg.methods", "lesseg.stages", "lesseg.registry"}) == []


def test_a_planted_circle_is_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
