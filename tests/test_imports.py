"""Each package's modules import one another in one direction only: no import circle among the studio's modules
or the model library's, counting the imports made for type hints and inside functions too. Read from the source;
nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def import_graph(package: str) -> dict[str, set[str]]:
    """Each module of the package (dotted name) and the package's modules it imports."""
    modules: dict[str, tuple[Path, bool]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)

    def module(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, (path, is_package) in modules.items():
        here = name if is_package else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                found = {module(alias.name) for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                source = node.module or ""
                if node.level:
                    anchor = here.rsplit(".", node.level - 1)[0] if node.level > 1 else here
                    source = f"{anchor}.{source}" if source else anchor
                # `from .x import y` imports the module x.y where there is one, else x
                found = {module(f"{source}.{alias.name}") for alias in node.names}
            else:
                continue
            graph[name] |= {target for target in found if target and target != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles: the strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        for target in graph[name]:
            if target not in index:
                visit(target)
                low[name] = min(low[name], low[target])
            elif target in stack:
                low[name] = min(low[name], index[target])
        if low[name] == index[name]:
            group = []
            while not group or group[-1] != name:
                group.append(stack.pop())
            if len(group) > 1:
                found.append(sorted(group))

    for name in graph:
        if name not in index:
            visit(name)
    return found


def test_the_studios_modules_import_one_another_without_a_circle():
    graph = import_graph("continuo")
    actions = graph["continuo.actions"]
    assert "continuo.studio" in actions and "continuo.main_window" not in actions  # it reads imports
    assert circles(graph) == []


def test_the_model_librarys_modules_import_one_another_without_a_circle():
    graph = import_graph("music_transformer")
    # it reads imports inside functions too: the command line reaches each command's module only when it runs
    assert "music_transformer.arguments" in graph["music_transformer.commands.generate"]
    assert not graph["music_transformer.arguments"] & {"music_transformer.cli", "music_transformer.commands"}
    assert circles(graph) == []


def test_a_circle_is_found():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
