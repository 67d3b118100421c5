"""The pure core stays pure: no Kafka, Faust or asyncio on import; no wall clock or environment.

Decision 1 of the design: replaying a topic reproduces the live decisions only if the core's
output depends on nothing but its inputs and its config.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
MODULES = sorted(f"distillguard.models.{p.stem}" for p in MODELS.glob("*.py") if p.stem != "__init__")
FORBIDDEN_PACKAGES = ("faust", "aiokafka", "asyncio", "mode", "kafka")


def test_there_are_core_modules_to_check() -> None:
    assert {"distillguard.models.events", "distillguard.models.pipeline",
            "distillguard.models.policy"} <= set(MODULES)


def test_importing_the_core_loads_no_kafka_faust_or_asyncio() -> None:
    code = (
        "import importlib, json, sys\n"
        f"for name in ['distillguard.models', *{MODULES!r}]:\n"
        "    importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN_PACKAGES!r})\n"
        "print(json.dumps(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded == [], f"the core pulled in {loaded}"


def test_the_check_itself_would_notice_asyncio() -> None:
    # guard against a subprocess check that can never fail
    code = "import asyncio, sys; print('asyncio' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert proc.stdout.strip() == "True"


WALL_CLOCK_OR_ENV = re.compile(
    r"\btime\.(time|time_ns|monotonic|perf_counter|localtime|gmtime)\s*\("
    r"|\bdatetime\.(now|utcnow|today)\s*\("
    r"|\bdate\.today\s*\("
    r"|\bos\.(environ|getenv|putenv)\b"
    r"|\bgetenv\s*\(")


# models/_build.py chooses which build of the core runs (compiled or the sources), never what
# it computes: it reads two variables of the environment and the build's files, and the
# builds make the same decisions (tests/scenario/test_compiled_core.py).
LOADER = MODELS / "_build.py"


@pytest.mark.parametrize("path", sorted(set(MODELS.glob("*.py")) - {LOADER}), ids=lambda p: p.name)
def test_core_reads_no_wall_clock_or_environment(path: Path) -> None:
    source = path.read_text()
    hits = [(n, line.strip()) for n, line in enumerate(source.splitlines(), 1)
            if WALL_CLOCK_OR_ENV.search(line)]
    assert hits == [], f"{path.name} reads the wall clock or the environment: {hits}"
    # nor imports what would let it do so under another name
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported & {"time", "datetime", "os", "asyncio", "faust", "aiokafka",
                           "socket"}, f"{path.name} imports {sorted(imported)}"


def test_the_pattern_catches_what_it_should() -> None:
    for line in ("t = time.time()", "datetime.now(tz)", "os.environ['X']", "os.getenv('X')",
                 "datetime.datetime.utcnow()"):
        assert WALL_CLOCK_OR_ENV.search(line), line
    assert not WALL_CLOCK_OR_ENV.search("ts = event.ts  # event time, not time.time")


def test_the_build_loader_reads_only_its_own_two_variables() -> None:
    source = LOADER.read_text()
    assert not re.search(r"\btime\.|\bdatetime\b", source)
    reads = re.findall(r"os\.environ\.get\(\"([A-Z_]+)\"", source)
    assert sorted(reads) == ["DISTILLGUARD_COMPILED_CORE", "DISTILLGUARD_CORE"]
    assert len(re.findall(r"\bos\.(environ|getenv)", source)) == len(reads)
