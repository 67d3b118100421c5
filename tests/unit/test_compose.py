"""docker-compose.yml and deploy/Dockerfile against the code, without Docker.

What a `docker compose up` would find out late (a container that exits, a worker in the wrong
consumer group, a broker that never becomes healthy) checked here in milliseconds: every command
parses with the real CLI parser, every DISTILLGUARD_* variable loads with the real settings loader,
the fleet shares one consumer group and one broker address, the broker is the Apache KRaft image
with topic auto-creation off, and the image is built from paths that exist and keeps the layout the
code relies on (deploy/ beside streams/). Prometheus scrapes every worker on its web port, Grafana
is provisioned with it and the dashboard, and every panel names a metric the workers export.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # no types-PyYAML in the dev extras
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from distillguard.streams.cli.main import build_parser
from distillguard.streams.edge.settings import Settings, SettingsError, load_settings
from distillguard.streams.edge.topics import DEFAULT_TOPICS_FILE

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
PYPROJECT = REPO / "pyproject.toml"

KAFKA_SERVICE = "kafka"
TOPICS_SERVICE = "topics"
PROMETHEUS_SERVICE = "prometheus"
GRAFANA_SERVICE = "grafana"
# Services of other images than the one built from deploy/Dockerfile.
THIRD_PARTY = {KAFKA_SERVICE, PROMETHEUS_SERVICE, GRAFANA_SERVICE}
EXPECTED_SERVICES = {*THIRD_PARTY, TOPICS_SERVICE, "worker-1", "worker-2", "simulator"}
CONSOLE_SCRIPT = "distillguard"


# --------------------------------------------------------------------------- compose file


@cache
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict), (
        f"{COMPOSE_FILE.name}: no top-level 'services' mapping"
    )
    return data


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


@cache
def app_image() -> str | None:
    """The image tag the compose file builds from deploy/Dockerfile (None when it names none)."""
    tags = {s.get("image") for s in services().values() if "build" in s}
    assert len(tags) == 1, f"services that build the image must agree on one image tag: {tags}"
    return tags.pop()


def app_service_names() -> list[str]:
    """Services that run the distillguard image (built here), i.e. everything but the broker."""
    return sorted(n for n, s in services().items()
                  if "build" in s or (s.get("image") is not None and s.get("image") == app_image()))


def command(name: str) -> list[str]:
    """The arguments after the image's entry point, as a list."""
    cmd = services()[name].get("command")
    assert cmd, f"service {name!r} has no command (the image's default would run)"
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


_INTERPOLATION = re.compile(r"\$\{(\w+)(:?-)([^}]*)\}|\$\{?(\w+)\}?")


def _interpolate(service: str, key: str, value: str) -> str:
    """Resolve compose's ${VAR:-default}; a bare $VAR would depend on the host: refused."""

    def sub(m: re.Match[str]) -> str:
        if m.group(1) is not None:
            return m.group(3)
        raise AssertionError(
            f"service {service!r}: {key}={value!r} takes its value from the host environment "
            f"(${m.group(4)}); give it a default, ${{{m.group(4)}:-...}}")

    return _INTERPOLATION.sub(sub, value.replace("$$", "\0")).replace("\0", "$")


def environment(name: str) -> dict[str, str]:
    """The service's environment as compose passes it to the container (strings)."""
    svc = services()[name]
    assert "env_file" not in svc, f"service {name!r}: env_file is not checked here; use environment"
    raw = svc.get("environment") or {}
    if isinstance(raw, list):
        pairs = [item.split("=", 1) if "=" in item else [item, None] for item in raw]
        raw = dict(pairs)
    env = {}
    for key, value in raw.items():
        assert value is not None, (
            f"service {name!r}: {key} has no value (compose would copy it from the host)")
        if isinstance(value, bool):
            value = "true" if value else "false"
        env[str(key)] = _interpolate(name, key, str(value))
    return env


@cache
def settings_of(name: str) -> Settings:
    """distillguard.streams.edge.settings.load_settings over exactly the service's environment."""
    env = environment(name)
    try:
        return load_settings(env=env)
    except SettingsError as exc:
        distillguard_vars = sorted(k for k in env if k.startswith("DISTILLGUARD_"))
        pytest.fail(f"service {name!r}: its environment {distillguard_vars} does not load: {exc}")


def depends_on(name: str) -> dict[str, str]:
    """{service: condition}; the short list form means service_started."""
    deps = services()[name].get("depends_on") or {}
    if isinstance(deps, list):
        return {d: "service_started" for d in deps}
    return {d: (spec or {}).get("condition", "service_started") for d, spec in deps.items()}


def worker_names() -> list[str]:
    return [n for n in app_service_names() if command(n)[0] == "worker"]


def kafka_env() -> dict[str, str]:
    return environment(KAFKA_SERVICE)


def listeners(value: str) -> dict[str, tuple[str, int]]:
    """'NAME://host:port,...' -> {NAME: (host, port)}."""
    out = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        m = re.fullmatch(r"([A-Za-z0-9_]+)://(\[[^\]]*\]|[^:]*):(\d+)", item)
        assert m, f"listener {item!r} is not NAME://host:port"
        out[m.group(1)] = (m.group(2), int(m.group(3)))
    return out


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("distillguard.streams.cli.main.build_parser() has no subcommands")


# --------------------------------------------------------------------------- the compose tests


def test_compose_has_the_expected_services() -> None:
    missing = EXPECTED_SERVICES - set(services())
    assert not missing, f"{COMPOSE_FILE.name} lacks service(s) {sorted(missing)}"
    assert set(app_service_names()) == set(services()) - THIRD_PARTY, (
        f"every service but {sorted(THIRD_PARTY)} should run the image built from "
        "deploy/Dockerfile; these do not: "
        f"{sorted(set(services()) - THIRD_PARTY - set(app_service_names()))}")


def test_the_image_is_built_from_deploy_dockerfile() -> None:
    for name in app_service_names():
        build = services()[name].get("build")
        if build is None:
            continue
        assert isinstance(build, dict), f"service {name!r}: build must name context and dockerfile"
        context = (COMPOSE_FILE.parent / build.get("context", ".")).resolve()
        assert context == REPO, (
            f"service {name!r}: build context {context} is not the repository root; the "
            "Dockerfile copies pyproject.toml, models/, streams/ ... from the root")
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        assert dockerfile == DOCKERFILE, f"service {name!r} builds {dockerfile}, not {DOCKERFILE}"


@pytest.mark.parametrize("name", app_service_names())
def test_command_is_a_cli_subcommand_that_parses(name: str, capsys: pytest.CaptureFixture[str]
                                                 ) -> None:
    svc = services()[name]
    if "entrypoint" in svc:
        entry = svc["entrypoint"]
        entry = shlex.split(entry) if isinstance(entry, str) else list(entry)
        assert entry == [CONSOLE_SCRIPT], (
            f"service {name!r} overrides the entry point with {entry}; the command is checked as "
            f"arguments of `{CONSOLE_SCRIPT}`")
    cmd = command(name)
    known = subcommands()
    assert cmd[0] in known, (
        f"service {name!r}: `{CONSOLE_SCRIPT} {' '.join(cmd)}`: {cmd[0]!r} is not a subcommand; "
        f"distillguard.streams.cli.main has {sorted(known)}")
    try:
        args = build_parser().parse_args(cmd)
    except SystemExit:
        pytest.fail(f"service {name!r}: `{CONSOLE_SCRIPT} {' '.join(cmd)}` does not parse: "
                    f"{capsys.readouterr().err.strip().splitlines()[-1]}")
    assert args.command == cmd[0]


@pytest.mark.parametrize("name", app_service_names())
def test_environment_is_accepted_by_the_settings(name: str) -> None:
    settings = settings_of(name)
    env = environment(name)
    # The values arrive: a variable that loads but is read under another name would not.
    if "DISTILLGUARD_KAFKA_BOOTSTRAP" in env:
        assert settings.kafka_bootstrap == env["DISTILLGUARD_KAFKA_BOOTSTRAP"]
    if "DISTILLGUARD_APP_ID" in env:
        assert settings.app_id == env["DISTILLGUARD_APP_ID"]
    if "DISTILLGUARD_WEB_PORT" in env:
        assert settings.web_port == int(env["DISTILLGUARD_WEB_PORT"])


def test_the_settings_loader_refuses_unknown_variables() -> None:
    # The check above means something only while load_settings refuses what it does not know.
    with pytest.raises(SettingsError, match="DISTILLGUARD_NO_SUCH_SETTING"):
        load_settings(env={"DISTILLGUARD_NO_SUCH_SETTING": "1"})


def test_there_are_at_least_two_workers() -> None:
    assert len(worker_names()) >= 2, (
        f"expected a fleet of at least two `worker` services, found {worker_names()}")


def test_workers_share_one_consumer_group() -> None:
    app_ids = {n: settings_of(n).app_id for n in worker_names()}
    assert len(set(app_ids.values())) == 1, (
        f"workers must share one app id (= Kafka consumer group, = table changelogs), or each "
        f"reads every partition on its own: {app_ids}")


def test_workers_have_distinct_web_ports() -> None:
    ports = {n: settings_of(n).web_port for n in worker_names()}
    assert len(set(ports.values())) == len(ports), f"workers share a web port: {ports}"


def test_workers_differ_only_in_their_web_port() -> None:
    def shared(name: str) -> dict[str, str]:
        return {k: v for k, v in environment(name).items() if k != "DISTILLGUARD_WEB_PORT"}

    first, *rest = worker_names()
    for name in rest:
        assert shared(name) == shared(first), (
            f"{name} and {first} are configured differently (a fleet decides alike): "
            f"{sorted(set(shared(name).items()) ^ set(shared(first).items()))}")
        assert command(name) == command(first)
        assert settings_of(name).detector == settings_of(first).detector


def test_kafka_bootstrap_is_the_brokers_internal_listener() -> None:
    env = kafka_env()
    advertised = listeners(env.get("KAFKA_ADVERTISED_LISTENERS", ""))
    bound = listeners(env.get("KAFKA_LISTENERS", ""))
    internal = env.get("KAFKA_INTER_BROKER_LISTENER_NAME", "PLAINTEXT")
    assert internal in advertised, (
        f"the broker advertises no {internal} listener: {env.get('KAFKA_ADVERTISED_LISTENERS')}")
    host, port = advertised[internal]
    names = {KAFKA_SERVICE, services()[KAFKA_SERVICE].get("hostname", KAFKA_SERVICE)}
    assert host in names, (
        f"the {internal} listener advertises {host!r}; containers reach the broker as {names}")
    assert bound.get(internal, (None, None))[1] == port, (
        f"{internal} is advertised on port {port} but KAFKA_LISTENERS binds "
        f"{bound.get(internal)}")
    expected = f"{host}:{port}"
    for name in app_service_names():
        assert settings_of(name).kafka_bootstrap == expected, (
            f"service {name!r} connects to {settings_of(name).kafka_bootstrap!r}; the broker is "
            f"{expected!r} on the compose network")


def test_every_service_uses_the_same_topics() -> None:
    # topics creates them, the simulator writes to them, the workers and watch read them.
    by_logical: dict[str, dict[str, str]] = {}
    for name in app_service_names():
        for logical, spec in settings_of(name).topics.items():
            by_logical.setdefault(logical, {})[name] = spec.name
    differ = {k: v for k, v in by_logical.items() if len(set(v.values())) > 1}
    assert not differ, f"services disagree on topic names: {differ}"


def test_simulator_sends_to_the_requests_topic() -> None:
    sims = [n for n in app_service_names() if command(n)[0] == "simulate"]
    assert sims, "no service runs `simulate`"
    for name in sims:
        args = build_parser().parse_args(command(name))
        assert args.topic is not None and args.out is None, (
            f"service {name!r}: `simulate` must send to Kafka (--topic), not write files")
        requests = settings_of(name).topics["requests"].name
        assert args.topic in ("-", requests), (
            f"service {name!r} sends to {args.topic!r}; the workers read {requests!r}")


def test_kafka_is_apache_kafka_4() -> None:
    image = services()[KAFKA_SERVICE].get("image", "")
    m = re.fullmatch(r"(?:docker\.io/)?apache/kafka:(\d+)\.(\d+)\.(\d+)", image)
    assert m, f"broker image {image!r} is not a pinned apache/kafka:X.Y.Z"
    assert int(m.group(1)) == 4, f"broker image {image!r}: expected Kafka 4.x"


def test_kafka_is_a_single_kraft_node() -> None:
    env = kafka_env()
    roles = {r.strip() for r in env.get("KAFKA_PROCESS_ROLES", "").split(",")}
    assert roles == {"broker", "controller"}, (
        f"KAFKA_PROCESS_ROLES={env.get('KAFKA_PROCESS_ROLES')!r}: one KRaft node must be both "
        "broker and controller")
    node = env.get("KAFKA_NODE_ID")
    voters = env.get("KAFKA_CONTROLLER_QUORUM_VOTERS", "")
    m = re.fullmatch(r"(\d+)@([^:,]+):(\d+)", voters)
    assert m and m.group(1) == node, (
        f"KAFKA_CONTROLLER_QUORUM_VOTERS={voters!r} must be the one node KAFKA_NODE_ID={node!r}")
    controller = env.get("KAFKA_CONTROLLER_LISTENER_NAMES", "")
    bound = listeners(env.get("KAFKA_LISTENERS", ""))
    assert controller in bound and bound[controller][1] == int(m.group(3)), (
        f"the quorum voter's port {m.group(3)} is not the {controller!r} listener {bound}")
    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
                "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"):
        assert env.get(key) == "1", (
            f"{key}={env.get(key)!r}: a single broker can only hold replication factor 1 "
            "(the default 3 leaves consumer groups without a coordinator)")


def test_topic_auto_creation_is_off_so_the_topics_service_creates_them() -> None:
    env = kafka_env()
    assert env.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "").lower() == "false", (
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE must be false: with it on, a misspelt topic becomes a "
        "one-partition topic instead of an error")
    assert command(TOPICS_SERVICE) == ["topics", "create"]
    assert services()[TOPICS_SERVICE].get("restart", "no") == "no", (
        "the topics service is one-shot; restarting it would stop dependants from starting")
    assert depends_on(TOPICS_SERVICE).get(KAFKA_SERVICE) == "service_healthy", (
        f"{TOPICS_SERVICE} must wait for the broker to be healthy, not just started")


def test_kafka_healthcheck_asks_the_broker() -> None:
    check = services()[KAFKA_SERVICE].get("healthcheck") or {}
    test = check.get("test")
    text = test if isinstance(test, str) else " ".join(map(str, test or []))
    assert "/opt/kafka/bin/kafka-broker-api-versions.sh" in text, (
        f"the broker's healthcheck should call kafka-broker-api-versions.sh, got {text!r}")


@pytest.mark.parametrize("name", [n for n in app_service_names() if n != TOPICS_SERVICE])
def test_service_starts_after_the_topics_exist(name: str) -> None:
    condition = depends_on(name).get(TOPICS_SERVICE)
    assert condition == "service_completed_successfully", (
        f"service {name!r} must depend on {TOPICS_SERVICE!r} with condition "
        f"service_completed_successfully (got {condition!r}): auto-creation is off, and a worker "
        "stops when its topics are missing")


# --------------------------------------------------------------------------- metrics


def mounted(name: str, container_path: str) -> Path:
    """The host path (in the repository) a service mounts at `container_path`."""
    for volume in services()[name].get("volumes") or []:
        source, _, rest = str(volume).partition(":")
        target = rest.split(":")[0]
        if target == container_path:
            path = (COMPOSE_FILE.parent / source).resolve()
            assert path.exists(), f"service {name!r} mounts {source}, which does not exist"
            return path
    raise AssertionError(f"service {name!r} mounts nothing at {container_path}")


def published(name: str) -> dict[int, int]:
    """{container port: host port} of a service's published ports ("[ip:]host:container")."""
    out = {}
    for entry in services()[name].get("ports") or []:
        *_, host, container = str(entry).split(":")
        out[int(container)] = int(host)
    return out


def test_prometheus_scrapes_every_worker_on_its_web_port() -> None:
    config = yaml.safe_load(mounted(PROMETHEUS_SERVICE, "/etc/prometheus/prometheus.yml")
                            .read_text())
    targets = {t for job in config["scrape_configs"]
               if job.get("metrics_path", "/metrics") == "/metrics"
               for sc in job.get("static_configs", []) for t in sc["targets"]}
    expected = {f"{n}:{settings_of(n).web_port}" for n in worker_names()}
    assert targets == expected, (
        f"Prometheus scrapes {sorted(targets)}; the workers serve /metrics at {sorted(expected)}")
    for name in worker_names():
        assert settings_of(name).web_bind not in ("127.0.0.1", "localhost", "::1"), (
            f"{name} serves /metrics on loopback only: Prometheus cannot reach it over the "
            "compose network (DISTILLGUARD_WEB_BIND: 0.0.0.0)")


def test_published_ports_are_the_documented_ones() -> None:
    header = "\n".join(line for line in COMPOSE_FILE.read_text().splitlines()
                       if line.startswith("#"))
    documented = {int(p) for p in re.findall(r"^#\s+(\d{2,5})\s", header, re.MULTILINE)}
    ports = {host for name in services() for host in published(name).values()}
    assert ports == documented, (
        f"published ports {sorted(ports)}, documented in the header {sorted(documented)}")
    for name in worker_names():
        port = settings_of(name).web_port
        assert published(name).get(port) == port, f"{name}'s web port {port} is not published"


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard() -> None:
    provisioning = mounted(GRAFANA_SERVICE, "/etc/grafana/provisioning")
    (datasource,) = yaml.safe_load(
        (provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    prometheus_port = 9090  # the image's default; the published port must be it too
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == f"http://{PROMETHEUS_SERVICE}:{prometheus_port}"
    assert prometheus_port in published(PROMETHEUS_SERVICE)
    (provider,) = yaml.safe_load(
        (provisioning / "dashboards" / "distillguard.yml").read_text())["providers"]
    dashboards = mounted(GRAFANA_SERVICE, provider["options"]["path"])
    assert dashboards == DASHBOARD.parent
    panels = dashboard()["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, f"panel {panel['title']!r} is wider than the page"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource["uid"], panel["title"]


DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "distillguard.json"


@cache
def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict) and data.get("panels"), f"{DASHBOARD.name}: no panels"
    return data


def test_every_dashboard_panel_names_metrics_the_workers_export() -> None:
    from tests.unit.test_metrics import exported_sample_names

    exported = exported_sample_names()
    named: set[str] = set()
    for panel in dashboard()["panels"]:
        assert panel.get("targets"), f"panel {panel.get('title')!r} has no query"
        for target in panel["targets"]:
            names = set(re.findall(r"\bdistillguard_[a-zA-Z0-9_]*", target["expr"]))
            assert names, f"panel {panel['title']!r}: {target['expr']!r} names no metric"
            unknown = names - exported
            assert not unknown, (
                f"panel {panel['title']!r} queries {sorted(unknown)}, which /metrics does not "
                "export (streams/worker/metrics.py)")
            named |= names
    # and the dashboard shows every family (a sample of each, counters by their _total)
    families = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in exported}
    shown = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in named}
    assert families <= shown, f"no panel shows {sorted(families - shown)}"


def test_the_image_healthcheck_asks_the_workers_health_page() -> None:
    (check,) = instructions("HEALTHCHECK")
    argv = exec_form(Instruction("CMD", check.args.split("CMD", 1)[1].strip(), check.workdir,
                                 check.line))
    assert argv[:2] == ["python", "-c"] and "/health" in argv[2], argv
    assert "DISTILLGUARD_WEB_PORT" in argv[2] and f"'{Settings().web_port}'" in argv[2]
    for name in app_service_names():
        disabled = (services()[name].get("healthcheck") or {}).get("disable", False)
        assert disabled == (name not in worker_names()), (
            f"service {name!r}: the image's healthcheck asks /health, which only workers serve"
            + ("; turn it off (healthcheck: disable: true)" if not disabled else ""))


# --------------------------------------------------------------------------- Dockerfile

DOCKERFILE = REPO / "deploy" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    workdir: PurePosixPath
    line: int


@cache
def dockerfile() -> tuple[Instruction, ...]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    out: list[Instruction] = []
    workdir = PurePosixPath("/")
    pending, start = "", 0
    for number, line in enumerate(DOCKERFILE.read_text().splitlines(), 1):
        if line.strip().startswith("#") or (not line.strip() and not pending):
            continue
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        keyword, _, args = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "WORKDIR":
            workdir = workdir / args.strip()
        out.append(Instruction(keyword, args.strip(), workdir, start))
    return tuple(out)


def instructions(keyword: str) -> list[Instruction]:
    return [i for i in dockerfile() if i.keyword == keyword]


def exec_form(ins: Instruction) -> list[str]:
    try:
        value = json.loads(ins.args)
    except json.JSONDecodeError:
        value = None
    assert isinstance(value, list), (
        f"{DOCKERFILE.name}:{ins.line}: {ins.keyword} should be in exec form [\"...\"] "
        "(the shell form puts /bin/sh first, which does not pass SIGTERM on to the worker)")
    return [str(v) for v in value]


@dataclass(frozen=True)
class Copy:
    sources: tuple[str, ...]
    dest: PurePosixPath  # absolute: the WORKDIR applied
    dest_is_dir: bool
    line: int


def copies() -> list[Copy]:
    """COPY/ADD from the build context (not --from another stage)."""
    out = []
    for ins in instructions("COPY") + instructions("ADD"):
        words = ins.args
        flags = re.findall(r"--[a-z-]+(?:=\S+)?", words.split("[")[0])
        if any(f.startswith("--from") for f in flags):
            continue
        rest = re.sub(r"^(?:--[a-z-]+(?:=\S+)?\s+)*", "", words)
        parts = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
        *sources, dest = parts
        out.append(Copy(tuple(sources), ins.workdir / dest,
                        dest.endswith("/") or dest in (".", "./") or len(sources) > 1, ins.line))
    return out


def image_path(copy: Copy, source: str) -> PurePosixPath:
    """Where `source` (a file or a directory of the context) lands in the image."""
    src = Path(source.rstrip("/"))
    if (REPO / src).is_dir():
        return copy.dest  # a directory's contents are copied into dest
    return copy.dest / src.name if copy.dest_is_dir else copy.dest


def test_dockerfile_entrypoint_is_the_console_script() -> None:
    scripts = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]
    assert CONSOLE_SCRIPT in scripts, f"pyproject.toml has no [project.scripts] {CONSOLE_SCRIPT}"
    entry = instructions("ENTRYPOINT")
    assert entry, f"{DOCKERFILE} has no ENTRYPOINT"
    argv = exec_form(entry[-1])
    assert argv[:1] == [CONSOLE_SCRIPT], (
        f"ENTRYPOINT {argv} should run the console script {CONSOLE_SCRIPT!r} "
        f"({scripts[CONSOLE_SCRIPT]}); compose commands are its arguments")
    cmd = instructions("CMD")
    if cmd:
        default = exec_form(cmd[-1])
        assert default[0] in subcommands(), f"CMD {default}: not a {CONSOLE_SCRIPT} subcommand"


def test_dockerfile_copies_only_paths_that_exist() -> None:
    assert copies(), f"{DOCKERFILE} copies nothing from the repository"
    for copy in copies():
        for source in copy.sources:
            if any(ch in source for ch in "*?["):
                continue  # BuildKit allows a wildcard to match nothing: an optional file
            assert (REPO / source).exists(), (
                f"{DOCKERFILE.name}:{copy.line}: COPY {source}: no such path in the repository")


def _ignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """.dockerignore as (exclude?, regex) in order; Go filepath.Match syntax plus **."""
    if not DOCKERIGNORE.is_file():
        return []
    out = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exclude = not line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex += "(?:.*/)?"  # any number of directories, none included
                i += 3
            elif pattern.startswith("**", i):
                regex += ".*"
                i += 2
            elif pattern[i] == "*":
                regex += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                regex += "[^/]"
                i += 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex += pattern[i:end + 1]
                i = end + 1
            else:
                regex += re.escape(pattern[i])
                i += 1
        out.append((exclude, re.compile(regex)))
    return out


def ignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` (relative to the context) out of the build context."""
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    result = False
    for exclude, regex in _ignore_patterns():
        if any(regex.fullmatch(p) for p in prefixes):
            result = exclude
    return result


def top_level_packages() -> list[str]:
    """The folders pyproject.toml installs (their subpackages come with them)."""
    found = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["packages"]["find"]
    return [p for p in found["include"] if "." not in p]


def test_dockerignore_keeps_what_the_image_needs() -> None:
    needed = [s.rstrip("/") for c in copies() for s in c.sources if not any(
        ch in s for ch in "*?[")]
    needed.append(DEFAULT_TOPICS_FILE.relative_to(REPO).as_posix())
    needed += [f"{p}/__init__.py" for p in top_level_packages()]
    dropped = [p for p in needed if ignored(p)]
    assert not dropped, f".dockerignore leaves out {dropped}, which the image needs"
    assert ignored(".venv/bin/python") and ignored(".git/HEAD"), (
        ".dockerignore should keep .venv/ and .git/ out of the build context")


def test_dockerfile_keeps_deploy_beside_the_packages() -> None:
    # streams/edge/topics.py reads <repo>/deploy/topics.toml relative to its own file: the image must
    # keep the checkout's layout and install in place (editable), not into site-packages.
    packages = top_level_packages()
    topics_dir = DEFAULT_TOPICS_FILE.parent.relative_to(REPO).as_posix()
    located: dict[str, PurePosixPath] = {}
    for copy in copies():
        for source in copy.sources:
            located[source.rstrip("/")] = image_path(copy, source)
    missing = [p for p in [*packages, topics_dir, "pyproject.toml"] if p not in located]
    assert not missing, f"{DOCKERFILE.name} does not COPY {missing}"
    root = located["pyproject.toml"].parent
    for path in [*packages, topics_dir]:
        assert located[path] == root / path, (
            f"{path}/ lands at {located[path]} but pyproject.toml at {root}/: the image must keep "
            f"the repository layout ({path}/ at {root / path})")
    installs = [i for i in instructions("RUN")
                if re.search(r"pip install\b.*(?:\s-e|--editable)\s+\.(?:\s|$)", i.args)]
    assert installs, (
        f"{DOCKERFILE.name}: the project should be installed with `pip install -e .`; a regular "
        "install copies the packages to site-packages, away from deploy/topics.toml")
    assert installs[-1].workdir == root, (
        f"`pip install -e .` runs in {installs[-1].workdir}, the project is in {root}")


def test_dockerfile_runs_as_a_non_root_user() -> None:
    users = instructions("USER")
    assert users, f"{DOCKERFILE.name} runs as root: add a USER"
    user = users[-1].args.split(":")[0]
    assert user not in ("root", "0"), f"{DOCKERFILE.name}: USER {user} is root"


def test_dockerfile_python_satisfies_requires_python() -> None:
    base = instructions("FROM")[-1].args.split()[0]
    m = re.fullmatch(r"(?:docker\.io/)?(?:library/)?python:(\d+\.\d+)(?:[.-].*)?", base)
    assert m, f"{DOCKERFILE.name}: base image {base!r} is not a python:X.Y image"
    requires = tomllib.loads(PYPROJECT.read_text())["project"]["requires-python"]
    assert SpecifierSet(requires).contains(m.group(1)), (
        f"base image Python {m.group(1)} does not satisfy requires-python {requires!r}")


# ---- constraints.txt: the exact versions every install uses ------------------------------------

CONSTRAINTS = REPO / "constraints.txt"


def pinned_versions() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin (name==version)"
            pins[canonicalize_name(name)] = version
    return pins


def test_constraints_pin_every_declared_dependency_within_its_range() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    declared = [Requirement(r) for r in [*project["dependencies"],
                                         *project["optional-dependencies"]["dev"]]]
    pins = pinned_versions()
    unpinned = [str(r) for r in declared if canonicalize_name(r.name) not in pins]
    assert not unpinned, f"constraints.txt pins nothing for {unpinned}: run make constraints"
    outside = [f"{r} (pinned {pins[canonicalize_name(r.name)]})" for r in declared
               if not r.specifier.contains(pins[canonicalize_name(r.name)], prereleases=True)]
    assert not outside, f"constraints.txt pins versions pyproject.toml refuses: {outside}"


def test_every_install_uses_the_constraints() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"pip install .*-c constraints\.txt .*-e \"\.\[dev\]\"", makefile), (
        "the Makefile's .venv should install with -c constraints.txt")
    installs = [i.args for i in instructions("RUN") if re.search(r"pip install (?!--no-deps)", i.args)]
    assert installs and all(
        all("-c constraints.txt" in part for part in re.findall(r"pip install [^&]*", args)
            if "--no-deps" not in part) for args in installs), installs
    assert any("constraints.txt" in c.sources for c in copies()), (
        "the Dockerfile should COPY constraints.txt before installing")
