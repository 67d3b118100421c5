"""Compile the detection core (models/) with mypyc, once per change of its sources.

    python deploy/compile_core.py            # `make core`; does nothing when the build is current
    python deploy/compile_core.py --force    # build again anyway

The build goes to .distillguard/compiled-core/ (or $DISTILLGUARD_COMPILED_CORE), never next
to the sources; models/_build.py loads it only while it matches them, so an edit of models/
runs from source until the next `make core`. Needs mypy (the dev extra), a C compiler and the
Python headers. With DISTILLGUARD_CORE=interpreted it builds nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# What the user asked for; this script itself only reads the sources, so it imports them as such
# (and is not told that the build it is about to replace is stale).
REQUESTED = os.environ.get("DISTILLGUARD_CORE") or "auto"
os.environ["DISTILLGUARD_CORE"] = "interpreted"

from distillguard.models._build import (
    COMPILED_MODULES,
    MANIFEST,
    MODELS_DIR,
    MODES,
    PACKAGE,
    build_dir,
    read_manifest,
    source_digest,
)

# Where the core's modules sit in the build, by their import name: distillguard/models.
CORE_DIR = Path(*PACKAGE.split("."))

OPT_LEVEL = "3"

SETUP = """\
from setuptools import setup
from mypyc.build import mypycify

setup(name="distillguard-core", packages=["distillguard", "distillguard.models"],
      ext_modules=mypycify(["--config-file", "mypy.ini", *{paths!r}], opt_level={opt!r},
                           group_name="distillguard_core"))
"""
# River's sources are not compiled, only called: skipped, the build takes ~20 s instead of ~5
# minutes of mypy analysing river and numpy (its values are `Any` to the compiled code).
MYPY_INI = """\
[mypy]
python_version = 3.11
[mypy-river.*]
follow_imports = skip
"""


def mypy_version() -> str | None:
    try:
        from mypy.version import __version__
    except ImportError:
        return None
    return str(__version__)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--force", action="store_true", help="build even if the build is current")
    args = parser.parse_args()
    if REQUESTED not in MODES:
        print(f"compile_core: DISTILLGUARD_CORE={REQUESTED!r}: expected one of "
              f"{', '.join(MODES)}", file=sys.stderr)
        return 2
    if REQUESTED == "interpreted":
        print("compile_core: DISTILLGUARD_CORE=interpreted: nothing to build")
        return 0
    target = build_dir()
    mypy = mypy_version()
    recipe = f"mypyc {mypy} -O{OPT_LEVEL} {MYPY_INI}"
    current = read_manifest(target)
    if not args.force and current is not None and current.get("digest") == source_digest() \
            and current.get("recipe") == recipe:
        print(f"compile_core: the compiled core in {target} is current")
        return 0
    if mypy is None:
        return _cannot_build("needs mypy (it carries mypyc): pip install -e '.[dev]'")
    print(f"compile_core: compiling {len(COMPILED_MODULES)} modules of models/ with mypyc "
          f"{mypy} (-O{OPT_LEVEL}) into {target}; ~20 s, once per change of models/")
    started = time.monotonic()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="compiled-core.", dir=target.parent) as tmp:
        work = Path(tmp)
        built = _build(work)
        if built is None:
            return _cannot_build("the build failed (above: the end of its log); it needs a C "
                                 "compiler and the Python headers (Debian: apt-get install gcc "
                                 "python3-dev)")
        # The digest of the sources as copied for the build, not as they may be by now.
        digest = source_digest(work / "src" / CORE_DIR)
        shared, modules = built
        staged = work / "staged"
        (staged / CORE_DIR).mkdir(parents=True)
        shutil.copy2(shared, staged / shared.name)
        for so in modules:
            shutil.copy2(so, staged / CORE_DIR / so.name)
        (staged / MANIFEST).write_text(json.dumps(
            {"digest": digest, "recipe": recipe, "shared_library": shared.name.split(".")[0],
             "shared_file": shared.name}) + "\n")
        # Swapped in whole: a process importing models/ meanwhile sees the old build or the
        # new one (its manifest is written last, inside the staged directory).
        old = work / "old"
        if target.exists():
            target.rename(old)
        staged.rename(target)
    print(f"compile_core: done in {time.monotonic() - started:.0f} s")
    return 0


def _build(work: Path) -> tuple[Path, list[Path]] | None:
    # Laid out as installed (distillguard/__init__.py), so the modules are named by their
    # import names, `distillguard.models.*`.
    src = work / "src"
    (src / CORE_DIR).mkdir(parents=True)
    (src / CORE_DIR.parent / "__init__.py").write_text("")
    for source in MODELS_DIR.glob("*.py"):
        shutil.copy2(source, src / CORE_DIR / source.name)
    paths = [f"{CORE_DIR.as_posix()}/{name}.py" for name in COMPILED_MODULES]
    (src / "setup.py").write_text(SETUP.format(paths=paths, opt=OPT_LEVEL))
    (src / "mypy.ini").write_text(MYPY_INI)
    log_path = work / "build.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([sys.executable, "setup.py", "build_ext", "--inplace"],
                                cwd=src, stdout=log, stderr=subprocess.STDOUT)
        _report_progress_until_done(proc)
    if proc.returncode != 0:
        lines = log_path.read_text(errors="replace").splitlines()
        print("\n".join(lines[-30:]), file=sys.stderr)
        return None
    suffix = str(sysconfig.get_config_var("EXT_SUFFIX"))
    shared = sorted(src.glob(f"*__mypyc{suffix}"))
    modules = [src / CORE_DIR / f"{name}{suffix}" for name in COMPILED_MODULES]
    missing = [m.name for m in modules if not m.exists()]
    if len(shared) != 1 or missing:
        print(f"compile_core: the build left no {missing or 'shared library'}", file=sys.stderr)
        return None
    return shared[0], modules


def _cannot_build(why: str) -> int:
    """Without the compiled core the sources run (same decisions, slower): an error only where
    it was required (DISTILLGUARD_CORE=compiled)."""
    if REQUESTED == "compiled":
        print(f"compile_core: {why}; DISTILLGUARD_CORE=compiled requires the build",
              file=sys.stderr)
        return 1
    print(f"compile_core: {why}. The core runs from its sources: the same decisions, replays "
          "~1.4x slower.", file=sys.stderr)
    return 0


def _report_progress_until_done(proc: subprocess.Popen[bytes]) -> None:
    started = time.monotonic()
    done = threading.Event()

    def tell() -> None:
        while not done.wait(15):
            print(f"compile_core: still compiling, {time.monotonic() - started:.0f} s",
                  flush=True)

    teller = threading.Thread(target=tell, daemon=True)
    teller.start()
    try:
        proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait()
        raise
    finally:
        done.set()


if __name__ == "__main__":
    sys.exit(main())
