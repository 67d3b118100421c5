"""What `pip install distillguard` puts in an environment: one import package, nothing else.

The folders `models/`, `streams/` and `simulator/` are generic names; installed at the top level
of site-packages they would collide with any other distribution's `models` or `streams`. They
are installed as `distillguard.models`, `distillguard.streams` and `distillguard.simulator`
(distillguard/__init__.py, docs/architecture.md "Installed names"). This builds the wheel as a
user's pip would and runs it without the clone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
                           "--wheel-dir", str(out), str(REPO)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (built,) = out.glob("distillguard-*.whl")
    return built


def test_the_wheel_installs_one_import_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"distillguard"}, tops
    for needed in ("distillguard/__init__.py", "distillguard/__main__.py",
                   "distillguard/models/cluster.py", "distillguard/models/_build.py",
                   "distillguard/streams/cli/main.py", "distillguard/simulator/scenario.py"):
        assert needed in names, needed
    # the links were followed: the topic definition is deploy/topics.toml's text
    with zipfile.ZipFile(wheel) as zf:
        assert zf.read("distillguard/topics.toml") == (REPO / "deploy" / "topics.toml").read_bytes()


def test_the_installed_package_runs_without_the_clone(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    (tmp_path / "models").mkdir()  # another distribution's `models`, beside it
    (tmp_path / "models" / "__init__.py").write_text("OTHER = True\n")
    code = ("import distillguard, models; "
            "from distillguard.streams.edge.topics import load_topic_specs; "
            "from distillguard.streams.cli.main import version_line; "
            "print(distillguard.__file__); print(models.OTHER); "
            "print(len(load_topic_specs())); print(version_line())")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLGUARD_")}
    env["PYTHONPATH"] = f"{site}{os.pathsep}{tmp_path}"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    where, other, topics, version = proc.stdout.splitlines()
    assert where.startswith(str(site)), "the installed copy, not the clone's"
    assert other == "True", "the other distribution's models is untouched"
    assert int(topics) >= 5
    assert version.startswith("distillguard ") and "detection core" in version
