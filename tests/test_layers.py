"""The package's import structure: no cycles, arrows only down the layers, and a self-contained model room.

Read from the code itself (every ``import`` of every module, function-level ones included), so a change
that makes ``data`` import ``training`` or two modules import each other fails here, naming the import.
The layers are those of docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import ast
from pathlib import Path

from helpers.cli import REPO

PACKAGE = "modeling_supclap"
ROOT = REPO / PACKAGE
# Rooms from the bottom up; a module may import its own room and any room of a lower (or equal) rank.
LAYERS = {
    "files": 0,
    "model": 1,
    "data": 2,
    "demo": 3,
    "evaluation": 3,
    "lora": 3,
    "towers": 3,
    "hub": 4,
    "space": 4,  # the files of a Space serving a pushed model (hub pushes them)
    "convert": 4,  # converting other code bases' checkpoints: like hub, only the command line uses it
    "inference": 4,  # using a trained model: embeddings, indexes, search (on evaluation's encoding)
    "training": 5,
    "app": 6,  # the demo app: serves a model (and builds the demo one by running supclap-train)
    "cli": 7,
    "__init__": 8,  # the package's face: imports what it hands on
}


def _module(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports() -> dict[str, set[str]]:
    """Every package module -> the package modules it imports (``from x import y``: ``x.y`` if a module)."""
    modules = {_module(path): path for path in ROOT.rglob("*.py") if "metrics" not in path.parts[-3:-1]}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                found = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            else:
                continue
            targets |= {target for target in found if target in modules and target != name}
        graph[name] = targets
    return graph


def test_no_module_imports_a_layer_above_it():
    wrong = [
        f"{source} -> {target}"
        for source, targets in _imports().items()
        for target in targets
        if LAYERS[_room(target)] > LAYERS[_room(source)]
    ]
    assert not wrong, "imports that run back up a layer (docs/ARCHITECTURE.md):\n" + "\n".join(wrong)


def test_only_the_command_line_uses_the_converters():
    """convert/ sits beside hub/: the command line uses it, nothing else depends on it."""
    users = sorted(
        source
        for source, targets in _imports().items()
        if _room(source) not in ("convert", "cli") and any(_room(t) == "convert" for t in targets)
    )
    assert not users, f"modules outside cli/ that import convert/: {users}"


def test_no_two_modules_import_each_other_even_through_others():
    graph, cycles = _imports(), []
    for start in graph:  # depth-first search for a path back to ``start``
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for target in graph.get(node, ()):
                if target == start and not target.endswith(".__init__"):
                    # a package face importing its own submodules is how packages work; not a cycle
                    if not any(_is_face_of(a, b) for a, b in zip(path, path[1:] + [start])):
                        cycles.append(" -> ".join([*path, start]))
                elif target not in seen:
                    seen.add(target)
                    stack.append((target, [*path, target]))
    assert not cycles, "import cycles:\n" + "\n".join(sorted(set(cycles)))


def _is_face_of(package: str, module: str) -> bool:
    """Whether ``package`` is a package (an ``__init__.py``) that ``module`` lives in, or the reverse."""
    return module.startswith(package + ".") or package.startswith(module + ".")


def test_the_model_room_imports_only_its_flat_siblings():
    """What save_pretrained copies for trust_remote_code must load without the package: ``from .x import``."""
    for path in (ROOT / "model").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1 and node.module, f"{path.name}: from {'.' * node.level}{node.module}"
                assert (ROOT / "model" / f"{node.module}.py").is_file(), f"{path.name}: {node.module}"
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(n.split(".")[0] == PACKAGE for n in names), f"{path.name} imports {names}"
