"""The compiled core (mypyc, `make core`) and the sources make the same decisions.

The fleet, a replay and a sweep may run either build (models/_build.py picks the compiled one
when it matches the sources): replay parity with the live fleet holds only if both builds
decide alike, ids included. Compiled code converts what its annotations say (an int annotated
`float` becomes a float) where the sources keep the value as given, so this compares the
decisions file of one replay per build, as written, but the processing time.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from distillguard.models._build import build_dir, read_manifest, source_digest
from distillguard.simulator import Scenario, write_files

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
# Every population, at a tenth of the accounts, over two hours: ~20k events, a few seconds.
SCENARIO = dataclasses.replace(Scenario.default(), scale=0.1, duration_h=2.0, seed=5)


def _env(build: str) -> dict[str, str]:
    """The environment of a process that runs `build` of the core (and no other settings)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLGUARD_")}
    env["DISTILLGUARD_CORE"] = build
    if "DISTILLGUARD_COMPILED_CORE" in os.environ:
        env["DISTILLGUARD_COMPILED_CORE"] = os.environ["DISTILLGUARD_COMPILED_CORE"]
    return env


def _require_a_current_build() -> None:
    manifest = read_manifest(build_dir())
    if manifest is None or manifest.get("digest") != source_digest():
        pytest.fail(f"no compiled core matching models/ in {build_dir()}: `make core` builds "
                    "it (`make test` does so first)")


PROCESSED_TS = re.compile(r',"ts":[-+.eE0-9]+')


def _replay(events: Path, out: Path, build: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-m", "distillguard", "replay", "--input", str(events),
                           "--output", str(out), "--quiet"],
                          cwd=REPO, env=_env(build), capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    # Compared as written, not as parsed (1767225840 == 1767225840.0 once parsed), but for when
    # each was processed (`ts`): the one field that differs run to run.
    lines = out.read_text().splitlines()
    assert all(PROCESSED_TS.search(line) for line in lines)
    return [PROCESSED_TS.sub("", line) for line in lines]


def test_the_compiled_core_decides_as_the_sources_do(tmp_path: Path) -> None:
    _require_a_current_build()
    write_files(SCENARIO, tmp_path)
    compiled = _replay(tmp_path / "events.jsonl", tmp_path / "compiled.jsonl", "compiled")
    interpreted = _replay(tmp_path / "events.jsonl", tmp_path / "sources.jsonl", "interpreted")
    assert len(compiled) > 20, "too few decisions to compare"
    assert {orjson.loads(line)["action"] for line in compiled} >= {"throttle", "block"}
    assert compiled == interpreted


# Run in a subprocess with one build: "write" replays the events and writes every account and
# cluster state as its changelog would hold it; "read" decodes them all with the other build.
_STATES = """
import sys, orjson
from pathlib import Path
import distillguard.streams
from distillguard.models._build import current_build
from distillguard.models.config import DetectorConfig
from distillguard.models.pipeline import Pipeline
from distillguard.streams.edge.codec import (decode_account_state, decode_cluster_state, encode_account_state,
                           encode_cluster_state)
from distillguard.streams.offline.replay_source import FileSource
action, events_path, states_path = sys.argv[1:]
if action == "write":
    pipeline = Pipeline(DetectorConfig())
    for ev, _ in FileSource(Path(events_path)).events(lambda _: None):
        pipeline.process(ev)
    Path(states_path).write_bytes(orjson.dumps({
        "accounts": [encode_account_state(s).decode() for s in pipeline.accounts.values()],
        "clusters": [encode_cluster_state(s).decode() for s in pipeline.clusters.values()]}))
else:
    states = orjson.loads(Path(states_path).read_bytes())
    accounts = [decode_account_state(s.encode()) for s in states["accounts"]]
    clusters = [decode_cluster_state(s.encode()) for s in states["clusters"]]
    for s in accounts:
        encode_account_state(s)
    for s in clusters:
        encode_cluster_state(s)
    print(len(accounts), len(clusters))
print(current_build())
"""


def _states(build: str, *args: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", _STATES, *args], cwd=REPO, env=_env(build),
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_each_build_reads_the_states_the_other_wrote(tmp_path: Path) -> None:
    # A fleet may mix builds (a rolling upgrade, a worker without a compiler): a partition that
    # moves is recovered from states the other build wrote.
    _require_a_current_build()
    write_files(SCENARIO, tmp_path)
    events = str(tmp_path / "events.jsonl")
    for writer, reader in (("compiled", "interpreted"), ("interpreted", "compiled")):
        states = str(tmp_path / f"{writer}.json")
        assert _states(writer, "write", events, states) == [writer]
        accounts, clusters, build = _states(reader, "read", events, states)
        assert build == reader
        assert int(accounts) > 300 and int(clusters) > 300
