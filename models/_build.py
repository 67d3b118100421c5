"""Which build of the core runs: compiled with mypyc, or these Python sources.

The one module of models/ that reads files and the environment, and it decides nothing; it
runs only when a program asks (`select_build`), never at `import models`. The programs ask
first thing: the first import of `streams` (every command, worker and pool process of
distillguard starts there), the bench scripts and the tests' conftest. A program that imports
the core alone runs its sources unless it calls `select_build()` before anything else of it.
`deploy/compile_core.py` compiles the core's modules (`COMPILED_MODULES`) into
`.distillguard/compiled-core/` beside the sources, never among them (an edited source must
not be shadowed by an older binary), with a manifest naming the digest of the sources it was
built from. `select_build` puts the compiled modules first on the package's path only when
that digest matches the sources here; otherwise the sources run. Both builds make the same decisions, ids included (tests/scenario/test_compiled_core.py
replays a scenario with each and compares), the compiled one ~1.5x faster (docs/performance.md).

    DISTILLGUARD_CORE=auto          the compiled core when it is built from these sources (default)
    DISTILLGUARD_CORE=compiled      the same, and a missing or stale build is an error
    DISTILLGUARD_CORE=interpreted   the sources, whatever is built
    DISTILLGUARD_COMPILED_CORE=DIR  another build directory
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import sysconfig
from collections.abc import MutableSequence
from pathlib import Path

# Every module of the detection core. Not the evaluation (offline scoring, not per event) and
# not the package's own __init__ or this loader.
COMPILED_MODULES = (
    "account", "account_stage", "allowlist", "baselines", "behaviour", "cluster",
    "cluster_stage", "config", "convicted", "crowd_hours", "decision", "detectors", "due",
    "events", "features", "keys", "messages", "partitioning", "pipeline", "policy", "scoring",
    "templates", "windows",
)
MODES = ("auto", "compiled", "interpreted")
# The environment this module reads (the settings loader leaves them alone).
BUILD_VARIABLES = ("DISTILLGUARD_CORE", "DISTILLGUARD_COMPILED_CORE")
MANIFEST = "manifest.json"
MODELS_DIR = Path(__file__).resolve().parent
# The core's import name (distillguard/__init__.py): its modules are `distillguard.models.*`.
PACKAGE = "distillguard.models"


class CompiledCoreError(ImportError):
    """DISTILLGUARD_CORE asks for what cannot be had (an unknown mode, or `compiled` without
    a matching build)."""


def default_build_dir() -> Path:
    return MODELS_DIR.parent / ".distillguard" / "compiled-core"


def build_dir() -> Path:
    # absolute: a process passes it on to workers that may start elsewhere
    return Path(os.environ.get("DISTILLGUARD_COMPILED_CORE") or default_build_dir()).absolute()


def requested_mode() -> str:
    mode = os.environ.get("DISTILLGUARD_CORE", "auto") or "auto"
    if mode not in MODES:
        raise CompiledCoreError(f"DISTILLGUARD_CORE={mode!r}: expected one of {', '.join(MODES)}")
    return mode


def source_digest(models_dir: Path = MODELS_DIR) -> str:
    """What a build must match: every source of the package (the compiled modules are compiled
    against the types of the others, models/evaluation.py among them), and the interpreter (an
    extension built for another Python or platform does not load)."""
    h = hashlib.sha256()
    h.update(f"{sys.implementation.cache_tag}|{sysconfig.get_config_var('EXT_SUFFIX')}".encode())
    for path in sorted(models_dir.glob("*.py")):
        h.update(f"|{path.name}|".encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def read_manifest(directory: Path) -> dict[str, str] | None:
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


# What `select_build` chose for this process; None until it runs.
_selected: str | None = None


def current_build() -> str:
    """"compiled" or "interpreted": which build of the core this process runs (said in logs
    and benchmark output)."""
    return _selected or "interpreted"


def select_build() -> str:
    """Choose the build of the core for this process, once, before any module of it loads:
    a matching compiled build first on the package's path, or the sources. Say which.

    Called again, it says what was chosen. Called after a module of the core was imported
    (from its sources, then), it cannot mix builds in one process: the sources run, and
    `DISTILLGUARD_CORE=compiled` is an error naming the module."""
    global _selected
    if _selected is None:
        loaded = sorted(name for name in COMPILED_MODULES if f"{PACKAGE}.{name}" in sys.modules)
        if loaded:
            if requested_mode() == "compiled":
                raise CompiledCoreError(
                    f"DISTILLGUARD_CORE=compiled: {PACKAGE}.{loaded[0]} was imported before the "
                    "build was selected; call distillguard.models._build.select_build() first")
            _selected = "interpreted"
        else:
            _selected = activate(sys.modules[PACKAGE].__path__)
    return _selected


def activate(package_path: MutableSequence[str]) -> str:
    """Put a matching compiled build first on the package's path; say which build runs."""
    mode = requested_mode()
    if mode == "interpreted":
        return "interpreted"
    directory = build_dir()
    manifest = read_manifest(directory)
    if manifest is None:
        problem = f"no compiled core in {directory}"
    elif manifest.get("digest") != source_digest():
        problem = (f"the compiled core in {directory} was built from other sources than "
                   f"{MODELS_DIR} (they changed since, or another Python)")
    else:
        _load_shared_library(directory, manifest)
        package_path.insert(0, str(directory.joinpath(*PACKAGE.split("."))))
        return "compiled"
    if mode == "compiled":
        raise CompiledCoreError(f"DISTILLGUARD_CORE=compiled: {problem}; build it with "
                                "`make core` (python deploy/compile_core.py)")
    if manifest is not None:
        # A stale build is worth a word: the speed a user measured is not the speed they get.
        # A missing one is not (an install without a compiler runs the sources, by design).
        print(f"distillguard: {problem}; running the core from its sources (same decisions, "
              "slower). `make core` rebuilds it.", file=sys.stderr)
    return "interpreted"


def _load_shared_library(directory: Path, manifest: dict[str, str]) -> None:
    # mypyc puts the code of all the modules in one library with a top-level name, which each
    # module's small extension imports by that name: loaded here from the build directory, so
    # nothing is added to sys.path.
    name = manifest["shared_library"]
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, directory / manifest["shared_file"])
    if spec is None or spec.loader is None:
        raise CompiledCoreError(f"cannot load {directory / manifest['shared_file']}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
