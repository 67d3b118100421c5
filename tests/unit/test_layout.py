"""The house's rooms and which may import which (docs/architecture.md).

    models/            the pure core: imports no other part (tests/unit/test_core_imports.py
                       holds the rest of its purity)
    simulator/         simulated traffic: imports nothing of the project
    streams/edge/      shared by the rooms below: imports the core only
    streams/worker/    the Faust worker: the core and streams.edge
    streams/offline/   replay, evaluate, sweep, diff: the core, the simulator, streams.edge
    streams/gate/      the gateway's decision service: streams.edge
    streams/cli/       the command: any of them

A rule is checked on the imports written in the code (`import x`, `from x import y`, at any
depth, under `if TYPE_CHECKING` too), read with `ast`, so a lazy import inside a function
counts as much as one at the top.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROJECT_PACKAGES = ("models", "simulator", "streams")

# room -> the rooms it may import (itself always)
MAY_IMPORT: dict[str, set[str]] = {
    "models": set(),
    "simulator": set(),
    # The package's own __init__ imports only models/_build.py: it chooses the core's build.
    "streams": {"models"},
    "streams.edge": {"models"},
    "streams.worker": {"models", "streams.edge"},
    "streams.offline": {"models", "simulator", "streams.edge"},
    "streams.gate": {"streams.edge"},
    "streams.cli": {"models", "simulator", "streams.edge", "streams.worker", "streams.offline",
                    "streams.gate"},
}
# The one import package (distillguard/__init__.py): `distillguard.models.x` is in room models.
PACKAGE = "distillguard"
# The room of an import by a folder's own name (`import models`), which the project never
# uses: from a clone's root it would load a second copy of the module, with other classes.
BY_FOLDER_NAME = "a folder's own name"


def room_of(module: str) -> str | None:
    """The room a dotted module name belongs to; None outside the project."""
    parts = module.split(".")
    if parts[0] in PROJECT_PACKAGES:
        return BY_FOLDER_NAME
    if parts[0] != PACKAGE or len(parts) < 2 or parts[1] not in PROJECT_PACKAGES:
        return None
    parts = parts[1:]
    if parts[0] == "streams":
        return ".".join(parts[:2]) if len(parts) > 1 else "streams"
    return parts[0]


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = [PACKAGE, *rel.parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every project module the file imports, relative ones resolved."""
    return imports_in(path.read_text(), module_name(path), path.name == "__init__.py")


def imports_in(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    tree = ast.parse(source)
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[:len(parts) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            # `from streams.edge import codec` names the module streams.edge.codec
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in found if room_of(name) is not None]


def project_files() -> list[Path]:
    return sorted(p for pkg in PROJECT_PACKAGES for p in (REPO / pkg).rglob("*.py"))


def test_every_module_of_streams_lives_in_a_room() -> None:
    loose = [p.relative_to(REPO).as_posix() for p in (REPO / "streams").glob("*.py")
             if p.name != "__init__.py"]
    assert not loose, f"modules outside the rooms of streams/: {loose}"
    rooms = {p.parent.name for p in (REPO / "streams").glob("*/__init__.py")}
    assert rooms == {"edge", "worker", "offline", "cli", "gate"}, rooms


@pytest.mark.parametrize("path", project_files(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_imports_follow_the_rooms(path: Path) -> None:
    room = room_of(module_name(path))
    assert room in MAY_IMPORT or room == "streams", room
    allowed = MAY_IMPORT.get(room, set()) | {room}
    wrong = []
    for line, name in imported_modules(path):
        target = room_of(name)
        # `from distillguard.streams.edge import codec` reads as streams.edge.codec; the bare
        # package `streams` (its docstring) belongs to no room and may be named by anyone.
        if target != "streams" and target not in allowed:
            wrong.append(f"line {line}: {name} ({target})")
    assert not wrong, (f"{path.relative_to(REPO)} in room {room} may import only "
                       f"{sorted(allowed)}: {wrong}")


def test_the_check_sees_a_forbidden_import_inside_a_function() -> None:
    # guard against a rule that can never fail: a worker module importing the offline replay
    names = imports_in("def f():\n    from distillguard.streams.offline.replay import replay\n",
                       "distillguard.streams.worker.probe", is_package=False)
    assert names == [(2, "distillguard.streams.offline.replay.replay")]
    assert room_of(names[0][1]) not in MAY_IMPORT["streams.worker"] | {"streams.worker"}


def test_an_import_by_a_folder_s_own_name_belongs_to_no_room() -> None:
    # `from models.config import X` works from a clone's root and loads a second core.
    names = imports_in("from models.config import DetectorConfig\nimport streams\n",
                       "distillguard.streams.cli.probe", is_package=False)
    assert [room_of(name) for _, name in names] == [BY_FOLDER_NAME, BY_FOLDER_NAME]
    assert all(BY_FOLDER_NAME not in rooms for rooms in MAY_IMPORT.values())


def test_relative_imports_are_resolved() -> None:
    names = imports_in("from .scenario import Scenario\nfrom . import network as net\n",
                       "distillguard.simulator.generate", is_package=False)
    assert names == [(1, "distillguard.simulator.scenario.Scenario"), (2, "distillguard.simulator.network")]


def test_the_architecture_doc_names_only_files_that_exist() -> None:
    # docs/architecture.md maps each box of the README's diagram to files: a file moved or
    # renamed must take the doc with it.
    doc = (REPO / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"`((?:models|streams|simulator|deploy|tests)/[\w/]+\.(?:py|toml))`",
                           doc))
    assert len(named) > 20, named
    missing = sorted(p for p in named if not (REPO / p).exists())
    assert not missing, f"docs/architecture.md names files that do not exist: {missing}"


PATH_NAMED = re.compile(r"\b((?:models|streams|simulator|tests|bench|deploy|docs|contract)/"
                        r"[\w/.-]+\.(?:py|md|toml|json|sh|in|yml))\b")


def test_every_path_named_in_code_and_docs_exists() -> None:
    # A comment or a doc that points at a file moved or deleted sends a newcomer nowhere.
    texts = [p for p in REPO.rglob("*") if p.is_file() and p.suffix in {".py", ".md", ".toml",
                                                                       ".yml", ".in", ".sh"}
             and not any(part.startswith(".") for part in p.relative_to(REPO).parts)
             and "egg-info" not in p.as_posix()]
    texts += [REPO / "Makefile", REPO / "deploy" / "Dockerfile"]
    assert len(texts) > 100
    dangling = sorted({f"{m.group(1)} (in {p.relative_to(REPO)})" for p in texts
                       for m in PATH_NAMED.finditer(p.read_text(errors="replace"))
                       if not (REPO / m.group(1)).exists()})
    assert not dangling, f"paths that do not exist: {dangling}"
