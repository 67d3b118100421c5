"""`distillguard replay` on files: the mistakes users make get one clear line and exit 2; the
override file and shadow mode; Ctrl-C stops cleanly with the decisions so far."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from distillguard.models.config import DetectorConfig
from distillguard.simulator import Scenario, write_files
from distillguard.streams.cli.main import main
from distillguard.streams.offline.replay import CoreInterrupts, replay_file

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DISTILLGUARD_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("small")
    write_files(Scenario.small(), out)
    return out


def ids(path: Path) -> list[str]:
    return [orjson.loads(x)["decision_id"] for x in path.read_bytes().splitlines() if x.strip()]


def test_override_file_changes_the_model_version_and_the_decisions(
        files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, tuned = tmp_path / "base.jsonl", tmp_path / "tuned.jsonl"
    assert main(["replay", "--input", str(files / "events.jsonl"), "--output", str(base),
                 "--quiet"]) == 0
    override = tmp_path / "o.toml"
    override.write_text("[detector]\nthrottle_score = 0.75\nblock_score = 0.95\n")
    assert main(["replay", "--input", str(files / "events.jsonl"), "--output", str(tuned),
                 "--override", str(override), "--quiet"]) == 0
    out = capsys.readouterr().out
    tuned_version = DetectorConfig(throttle_score=0.75, block_score=0.95).model_version
    assert tuned_version in out
    records = [orjson.loads(x) for x in tuned.read_bytes().splitlines()]
    assert {r["model_version"] for r in records} == {tuned_version}
    assert ids(base) != ids(tuned)


def test_settings_file_with_an_unknown_key_is_a_clear_error(
        files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = tmp_path / "s.toml"
    settings.write_text("[detector]\nblock_scor = 0.9\n")
    assert main(["replay", "--settings", str(settings), "--input",
                 str(files / "events.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown detector setting 'block_scor'" in err
    settings.write_text("kafka_bootstrp = 'x:9092'\n")
    assert main(["replay", "--settings", str(settings), "--input",
                 str(files / "events.jsonl")]) == 2
    assert "unknown setting 'kafka_bootstrp'" in capsys.readouterr().err


@pytest.mark.parametrize(("extra", "message"), [
    (["--since", "2026-01-01"], "--since selects part of a topic"),
    (["--labels", "{other_labels}"], "the labels match no account"),
    (["--override", "{missing}"], "does not exist"),
    (["--to-enforcement-topic"], "add --i-mean-it"),
])
def test_replay_mistakes_are_one_line_errors(files: Path, tmp_path: Path, extra: list[str],
                                             message: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other.jsonl"
    other.write_text('{"account_id": "nobody-here", "label": "attack", "group": "x"}\n')
    extra = [e.format(other_labels=other, missing=tmp_path / "missing.toml") for e in extra]
    assert main(["replay", "--input", str(files / "events.jsonl"), "--quiet", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_decisions_written_with_shadow_setting_are_marked_shadow(
        files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTILLGUARD_SHADOW", "true")
    out = tmp_path / "d.jsonl"
    assert main(["replay", "--input", str(files / "events.jsonl"), "--output", str(out),
                 "--quiet"]) == 0
    assert {orjson.loads(x)["mode"] for x in out.read_bytes().splitlines()} == {"shadow"}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a named pipe")
def test_ctrl_c_stops_cleanly_with_the_decisions_so_far(files: Path, tmp_path: Path) -> None:
    # The events arrive through a pipe that stays open, so the replay is still running (waiting
    # for more) when Ctrl-C comes, however fast the core is.
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    out = tmp_path / "d.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLGUARD_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "distillguard", "replay", "--input", str(fifo), "--output",
         str(out)], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509
    try:
        with fifo.open("wb") as writer:
            writer.write((files / "events.jsonl").read_bytes())
            writer.flush()
            # Interrupt once it has written decisions (or after a deadline, if it buffers them);
            # a loaded machine can take many seconds to start it.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not (out.exists() and out.stat().st_size):
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr.decode()
    assert b"interrupted: the output holds the decisions up to that point" in stdout
    assert b"Traceback" not in stderr
    full = tmp_path / "full.jsonl"
    replay_file(files / "events.jsonl", full, DetectorConfig())
    got, expected = ids(out), ids(full)
    assert got == expected[:len(got)], "what was written is the start of the full replay"


def test_a_ctrl_c_during_an_event_is_raised_once_the_core_has_returned() -> None:
    # (inside the compiled core a KeyboardInterrupt can abort the process: CI saw the test
    # above end in SIGABRT, "fatal: out of memory", once; and an event half processed would
    # leave the core's state half-updated)
    def spin_until(done: Callable[[], bool]) -> None:
        # (Python runs a signal's handler between bytecodes, so a loop gives it its turn)
        deadline = time.monotonic() + 10
        while not done() and time.monotonic() < deadline:
            pass

    # (what the process had: Python's handler, or SIG_IGN when started in the background by a
    # shell without job control, which the handler must give back as it found it)
    before = signal.getsignal(signal.SIGINT)
    with CoreInterrupts() as ctrl_c:
        ctrl_c.holding = True
        os.kill(os.getpid(), signal.SIGINT)
        spin_until(lambda: ctrl_c.came)
        assert ctrl_c.came  # held, not raised, while the core runs
        with pytest.raises(KeyboardInterrupt):
            ctrl_c.release()
        ctrl_c.release()  # raised once
        with pytest.raises(KeyboardInterrupt):  # waiting on input: at once
            os.kill(os.getpid(), signal.SIGINT)
            spin_until(lambda: False)
    assert signal.getsignal(signal.SIGINT) is before


def test_a_file_replay_takes_the_partition_count_of_the_settings(
        files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The fleet's DISTILLGUARD_PARTITIONS, as --partitions would give it.
    monkeypatch.setenv("DISTILLGUARD_PARTITIONS", "48")
    assert main(["replay", "--input", str(files / "events.jsonl"), "--quiet",
                 "--output", str(tmp_path / "set.jsonl")]) == 0
    monkeypatch.delenv("DISTILLGUARD_PARTITIONS")
    assert main(["replay", "--input", str(files / "events.jsonl"), "--quiet", "--partitions",
                 "48", "--output", str(tmp_path / "given.jsonl")]) == 0
    assert ids(tmp_path / "set.jsonl") == ids(tmp_path / "given.jsonl")
    assert main(["replay", "--input", str(files / "events.jsonl"), "--quiet",
                 "--output", str(tmp_path / "default.jsonl")]) == 0
    assert ids(tmp_path / "default.jsonl") != ids(tmp_path / "set.jsonl")  # 12: others


def test_copy_topic_refuses_to_copy_a_topic_into_itself(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["copy-topic", "--from", "t.requests", "--to", "t.requests"]) == 2
    assert "--from and --to are both t.requests" in capsys.readouterr().err


def test_a_ctrl_c_while_the_core_is_imported_ends_the_command_with_130_not_an_abort(
        files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A KeyboardInterrupt inside a compiled module's initialisation aborts the process (seen
    in CI: SIGABRT, "fatal: out of memory", a replay interrupted while it started): the
    command holds Ctrl-C back while it imports the core, then stops with 130."""
    import importlib

    from distillguard.streams.cli import main as cli

    imported: list[str] = []
    real_import = importlib.import_module

    def import_with_ctrl_c(name: str) -> object:
        if not imported:  # the user presses Ctrl-C during the first import
            os.kill(os.getpid(), signal.SIGINT)
        imported.append(name)
        return real_import(name)

    monkeypatch.setattr(cli.importlib, "import_module", import_with_ctrl_c)
    handler = signal.getsignal(signal.SIGINT)
    out = tmp_path / "d.jsonl"
    assert cli.main(["replay", "--input", str(files / "events.jsonl"), "--output", str(out),
                     "--quiet"]) == 130
    assert "interrupted while starting" in capsys.readouterr().err
    assert not out.exists()  # the replay never started
    assert len(imported) == len(cli.COMPILED_MODULES)  # every import done, none cut short
    assert signal.getsignal(signal.SIGINT) is handler  # Ctrl-C is the user's again
    imported.clear()
    monkeypatch.setattr(cli.importlib, "import_module", real_import)
    assert cli.import_core_holding_ctrl_c() is False  # no Ctrl-C: nothing to report
