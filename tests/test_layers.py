"""The packages are layers: a module imports only from its own package or from layers below it,
so the flow (list -> plan -> schedule -> fetch -> store -> record -> show) can be read from the
tree, and no package needs another that needs it back."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "bulkfetch"
# Highest first. `lists` and `http` are siblings: neither imports the other.
LAYERS: dict[str, int] = {
    "face": 5,  # cli, api, settings, __init__, __main__
    "schedule": 4,
    "lists": 3,
    "http": 3,
    "store": 2,
    "show": 1,
    "vocabulary": 0,  # models, errors
}
VOCABULARY = {"models", "errors", "__version__"}  # the version: from the package itself
TOP_MODULES_MAX = 8


def layer_of(parts: tuple[str, ...]) -> str:
    """The layer of a module, by its dotted path under bulkfetch."""
    if parts[0] in LAYERS:
        return parts[0]
    return "vocabulary" if parts[0] in VOCABULARY else "face"


def imports(path: Path) -> list[tuple[str, ...]]:
    """Every bulkfetch module that `path` imports, as parts under bulkfetch."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts == ["bulkfetch"]:  # `from bulkfetch import api, __version__`
                found += [(alias.name,) for alias in node.names]
            elif parts[0] == "bulkfetch":
                found.append(tuple(parts[1:]))
        elif isinstance(node, ast.Import):
            found += [tuple(a.name.split(".")[1:]) for a in node.names
                      if a.name.split(".")[0] == "bulkfetch"]
    return found


MODULES = sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(SRC).as_posix())
def test_imports_go_down_the_layers(path: Path) -> None:
    """No module imports from a layer above its own, nor from a sibling layer."""
    own_parts = path.relative_to(SRC).with_suffix("").parts
    own = layer_of(own_parts)
    for target in imports(path):
        other = layer_of(target)
        if other == own:
            continue
        assert LAYERS[other] < LAYERS[own], (
            f"{'.'.join(own_parts)} ({own}) imports bulkfetch.{'.'.join(target)} ({other})")


def test_the_top_keeps_only_the_face_and_the_vocabulary() -> None:
    """At most eight modules beside the packages: the face and the shared vocabulary."""
    top = sorted(p.name for p in SRC.glob("*.py"))
    assert len(top) <= TOP_MODULES_MAX, top
    packages = sorted(p.name for p in SRC.iterdir() if (p / "__init__.py").exists())
    assert packages == sorted(name for name in LAYERS if name not in ("face", "vocabulary"))
