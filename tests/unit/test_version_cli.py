"""`distillguard --version` names the package, the detection core's version and the build that
runs, so a report of a decision can be matched to the code that made it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from distillguard.models._build import current_build
from distillguard.models.config import CORE_VERSION
from distillguard.streams.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


def test_version_names_the_package_the_core_and_its_build(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    line = capsys.readouterr().out.strip()
    package = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert re.fullmatch(rf"distillguard ({re.escape(package)}|\(not installed\)), "
                        rf"detection core {re.escape(CORE_VERSION)} \({current_build()}\)", line)


def test_the_package_version_follows_the_core() -> None:
    # A release whose decisions change bumps CORE_VERSION; the package's minor follows it, so
    # `pip show distillguard` and every decision's model version tell the same story.
    package = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert package.split(".")[:2] == CORE_VERSION.split(".")[:2]
