"""Which build of the core a process runs (models/_build.py): the compiled one only when it was
built from the sources beside it, never a stale one in silence, and clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from distillguard.models._build import MANIFEST, source_digest

REPO = Path(__file__).resolve().parents[2]


def _run(code: str, env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLGUARD_")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def _import_models(env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """What every program of distillguard does first: import streams (it selects the build)."""
    return _run("import distillguard.streams, distillguard.models._build as b; print(b.current_build())",
                env_extra)


def test_importing_the_core_reads_nothing_and_loads_nothing() -> None:
    # The issue: `import models` read the environment, hashed the sources, swapped the
    # package's path and could print. Now the program chooses (models/_build.py).
    proc = _run("import sys, distillguard.models; print(sorted(m for m in sys.modules if 'models' in m))",
                {"DISTILLGUARD_CORE": "fast"})  # an unknown mode: an error only if read
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['distillguard.models']" and proc.stderr == ""


def test_a_core_module_imported_before_the_selection_keeps_one_build_in_the_process(
        tmp_path: Path) -> None:
    code = ("import distillguard.models.policy, distillguard.models._build as b; "
            "print(b.select_build()); import distillguard.models.policy as p; "
            "print(p.__file__.endswith('.py'))")
    proc = _run(code, {})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["interpreted", "True"]
    proc = _run(code, {"DISTILLGUARD_CORE": "compiled"})
    assert proc.returncode != 0
    assert "was imported before the build was selected" in proc.stderr


def _stale_build(directory: Path) -> Path:
    (directory / "models").mkdir(parents=True)
    (directory / MANIFEST).write_text(json.dumps(
        {"digest": "0" * 64, "mypy": "x", "shared_library": "nothing__mypyc",
         "shared_file": "nothing__mypyc.so"}))
    return directory


def test_without_a_build_the_sources_run_quietly(tmp_path: Path) -> None:
    proc = _import_models({"DISTILLGUARD_COMPILED_CORE": str(tmp_path / "none")})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "interpreted"
    assert proc.stderr == ""


def test_a_stale_build_is_not_loaded_and_says_so(tmp_path: Path) -> None:
    proc = _import_models({"DISTILLGUARD_COMPILED_CORE": str(_stale_build(tmp_path))})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "interpreted"
    assert "built from other sources" in proc.stderr and "make core" in proc.stderr


def test_asking_for_the_compiled_core_without_one_is_an_error(tmp_path: Path) -> None:
    proc = _import_models({"DISTILLGUARD_COMPILED_CORE": str(_stale_build(tmp_path)),
                           "DISTILLGUARD_CORE": "compiled"})
    assert proc.returncode != 0
    assert "DISTILLGUARD_CORE=compiled" in proc.stderr and "make core" in proc.stderr


def test_interpreted_ignores_any_build(tmp_path: Path) -> None:
    proc = _import_models({"DISTILLGUARD_COMPILED_CORE": str(_stale_build(tmp_path)),
                           "DISTILLGUARD_CORE": "interpreted"})
    assert proc.returncode == 0 and proc.stdout.strip() == "interpreted"
    assert proc.stderr == ""


def test_an_unknown_mode_is_an_error() -> None:
    proc = _import_models({"DISTILLGUARD_CORE": "fast"})
    assert proc.returncode != 0
    assert "DISTILLGUARD_CORE='fast'" in proc.stderr and "interpreted" in proc.stderr


def test_the_digest_follows_every_compiled_source(tmp_path: Path) -> None:
    copy = tmp_path / "models"
    copy.mkdir()
    for source in (REPO / "models").glob("*.py"):
        (copy / source.name).write_bytes(source.read_bytes())
    before = source_digest(copy)
    assert before == source_digest(REPO / "models")
    with (copy / "policy.py").open("a") as f:
        f.write("\n# an edit\n")
    assert source_digest(copy) != before
