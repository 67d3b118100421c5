"""deploy/k8s/ (the Kubernetes manifests) against the code and against the schemas, without a
cluster.

Each overlay is rendered with kustomize, as `kubectl apply -k` would render it, and what it
renders is checked:
- against Kubernetes' own JSON schemas (the kubernetes-validate package, strict: an unknown
  field, which the API server would drop without a word, is an error) and KEDA's CRDs;
- against the code: the ConfigMap and the Secret references load with the real settings loader,
  the commands parse with the real CLI parser, the probes ask the pages the worker registers on
  the port it listens on, the data directory is on the volume, the autoscaler stops at the
  requests topic's partition count (deploy/topics.toml) and reads the lag of the group and topic
  the workers use, the selectors select what they mean to.

kustomize and KEDA's CRDs come from `make k8s-tools` (into .tools/); without them the tests that
need them skip here, and fail under CI (CI=true), which installs them (.ci/run).
"""

from __future__ import annotations

import copy
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml  # type: ignore[import-untyped]  # no types-PyYAML in the dev extras

from distillguard.streams.cli.main import build_parser
from distillguard.streams.edge.settings import Settings, SettingsError, load_settings

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("production", "local")
IMAGE = "distillguard"
WORKER = "distillguard-worker"
# The oldest Kubernetes the manifests are meant for (KEDA 2.16 supports 1.29 to 1.31) and the
# newest the schemas know: both must accept them.
KUBERNETES_VERSIONS = ("1.29", "latest")
# Kafka's SASL mechanism names (the settings) and KEDA's kafka scaler's for the same.
KEDA_SASL = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256",
             "SCRAM-SHA-512": "scram_sha512"}
# Stand-ins for what the Secret holds: long enough for internal_record_keys.
SECRET_STAND_IN = "s" * 64


# --------------------------------------------------------------------------- the tools


def makefile_variable(name: str) -> str:
    m = re.search(rf"^{name}\s*:=\s*(\S+)", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert m, f"Makefile: no {name} := ..."
    return m.group(1)


def missing_tool(what: str) -> None:
    message = f"{what} not installed: run `make k8s-tools`"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (.ci/run should have)")
    pytest.skip(message)


def kustomize() -> str:
    own = REPO / ".tools" / f"kustomize-{makefile_variable('KUSTOMIZE_VERSION')}" / "kustomize"
    found = str(own) if own.is_file() else shutil.which("kustomize")
    if found is None:
        missing_tool("kustomize")
    assert found is not None
    return found


@cache
def _render(overlay: str) -> tuple[dict[str, Any], ...]:
    done = subprocess.run([kustomize(), "build", str(K8S / "overlays" / overlay)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"kustomize build overlays/{overlay} failed:\n{done.stderr}"
    return tuple(d for d in yaml.safe_load_all(done.stdout) if d)


def render(overlay: str) -> list[dict[str, Any]]:
    """The objects `kubectl apply -k deploy/k8s/overlays/<overlay>` would send (copies)."""
    return copy.deepcopy(list(_render(overlay)))


def objects(overlay: str, kind: str) -> list[dict[str, Any]]:
    return [o for o in render(overlay) if o["kind"] == kind]


def one(overlay: str, kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects(overlay, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"overlays/{overlay}: {len(found)} {kind} named {name}, expected one"
    return found[0]


def worker_set(overlay: str) -> dict[str, Any]:
    return one(overlay, "StatefulSet", WORKER)


def pod_specs(overlay: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(object name, pod spec) of everything that runs the distillguard image."""
    for o in render(overlay):
        spec = o.get("spec", {}).get("template", {}).get("spec")
        if spec and any(c["image"].split(":")[0].endswith(IMAGE) for c in spec["containers"]):
            yield f"{o['kind']}/{o['metadata']['name']}", spec


def container(spec: dict[str, Any]) -> dict[str, Any]:
    assert len(spec["containers"]) == 1, "one container per pod: the distillguard program"
    found: dict[str, Any] = spec["containers"][0]
    return found


def environment(overlay: str, c: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet would set it, the Secret's values stood in."""
    maps = {m["metadata"]["name"]: m.get("data", {}) for m in objects(overlay, "ConfigMap")}
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        ref = source["configMapRef"]["name"]
        assert ref in maps, f"envFrom names ConfigMap {ref}, which the overlay does not make"
        env.update(maps[ref])
    for item in c.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            assert "secretKeyRef" in item["valueFrom"], item
            env[item["name"]] = SECRET_STAND_IN
    return env


def settings(overlay: str, c: dict[str, Any]) -> Settings:
    try:
        return load_settings(env=environment(overlay, c))
    except SettingsError as exc:
        pytest.fail(f"overlays/{overlay}: container {c['name']}'s environment does not load: {exc}")


def worker_settings(overlay: str) -> Settings:
    return settings(overlay, container(worker_set(overlay)["spec"]["template"]["spec"]))


# --------------------------------------------------------------------------- schemas


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_kinds_match_the_kubernetes_schemas(overlay: str, version: str) -> None:
    import kubernetes_validate.utils as kv

    version = kv.latest_version() if version == "latest" else version
    problems = []
    for o in render(overlay):
        if o["apiVersion"].startswith("keda.sh/"):
            continue  # KEDA's own kinds: the next test
        try:
            kv.validate(o, version, strict=True)
        except kv.ValidationError as exc:
            problems.append(f"{o['kind']}/{o['metadata']['name']}: "
                            f"{'.'.join(map(str, exc.path))}: {exc.message}")
        except kv.SchemaNotFoundError as exc:
            problems.append(exc.message)
    assert not problems, f"overlays/{overlay}, Kubernetes {version}:\n" + "\n".join(problems)


def _strict(schema: Any) -> Any:
    """An OpenAPI schema of a CRD as JSON schema that refuses unknown fields, as kubectl's
    strict field validation does (the API server would otherwise drop them)."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) if k in ("items", "additionalProperties", "anyOf", "allOf", "oneOf",
                                  "not") else v for k, v in schema.items()}
    if "properties" in schema:
        out["properties"] = {k: _strict(v) for k, v in schema["properties"].items()}
        if ("additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
    return out


@cache
def keda_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """{(apiVersion, kind): JSON schema} from KEDA's CRDs (make k8s-tools)."""
    crds = REPO / ".tools" / f"keda-{makefile_variable('KEDA_VERSION')}"
    if not (crds / ".crds").is_file():
        missing_tool("KEDA's CRDs")
    schemas = {}
    for path in sorted(crds.glob("keda.sh_*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for v in crd["spec"]["versions"]:
            schemas[(f"{group}/{v['name']}", kind)] = _strict(v["schema"]["openAPIV3Schema"])
    return schemas


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_kinds_match_kedas_crds(overlay: str) -> None:
    for o in render(overlay):
        if not o["apiVersion"].startswith("keda.sh/"):
            continue
        schema = keda_schemas().get((o["apiVersion"], o["kind"]))
        assert schema, f"KEDA {makefile_variable('KEDA_VERSION')} has no {o['apiVersion']} {o['kind']}"
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(o), key=str)
        assert not errors, f"overlays/{overlay}: {o['kind']}/{o['metadata']['name']}: " + "; ".join(
            f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_the_strict_crd_schema_refuses_a_misspelt_field() -> None:
    # What the test above means rests on this.
    schema = keda_schemas()[("keda.sh/v1alpha1", "ScaledObject")]
    good = one("production", "ScaledObject")
    assert jsonschema.Draft7Validator(schema).is_valid(good)
    good["spec"]["maxReplicas"] = 12
    assert not jsonschema.Draft7Validator(schema).is_valid(good)


# --------------------------------------------------------------------------- against the code


def test_the_overlays_render_the_objects_they_should() -> None:
    kinds = {o: sorted(f"{x['kind']}/{x['metadata']['name']}" for x in render(o)) for o in OVERLAYS}
    settings_map = [k for k in kinds["production"] if k.startswith("ConfigMap/")]
    assert kinds["production"] == sorted([
        *settings_map, f"Service/{WORKER}", f"StatefulSet/{WORKER}",
        f"PodDisruptionBudget/{WORKER}", "Job/distillguard-topics", f"ScaledObject/{WORKER}",
        "TriggerAuthentication/distillguard-kafka"]), kinds["production"]
    # production: the Secret is created out of band, never applied (the base's is a placeholder)
    assert not objects("production", "Secret")
    # local: no KEDA; its own broker
    assert not objects("local", "ScaledObject")
    assert "StatefulSet/kafka" in kinds["local"] and "Secret/distillguard-kafka" in kinds["local"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_environment_loads_with_the_settings_loader(overlay: str) -> None:
    specs = dict(pod_specs(overlay))
    assert set(specs) == {f"StatefulSet/{WORKER}", "Job/distillguard-topics"}, sorted(specs)
    loaded = {name: settings(overlay, container(spec)) for name, spec in specs.items()}
    # The topic Job creates the topics the workers read, on the same brokers.
    job, workers = loaded["Job/distillguard-topics"], loaded[f"StatefulSet/{WORKER}"]
    assert job.kafka_bootstrap == workers.kafka_bootstrap
    assert job.topics == workers.topics
    assert job.security_protocol == workers.security_protocol


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_never_in_the_configmap(overlay: str) -> None:
    for m in objects(overlay, "ConfigMap"):
        for secret in ("DISTILLGUARD_SASL_PASSWORD", "DISTILLGUARD_INTERNAL_RECORD_KEYS"):
            assert secret not in m.get("data", {}), f"{secret} in ConfigMap {m['metadata']['name']}"
    for _, spec in pod_specs(overlay):
        for item in container(spec).get("env", []):
            if item["name"] in ("DISTILLGUARD_SASL_PASSWORD", "DISTILLGUARD_INTERNAL_RECORD_KEYS"):
                assert "secretKeyRef" in item.get("valueFrom", {}), item


def secret_keys(overlay: str) -> set[tuple[str, str]]:
    """(Secret, key) of every secretKeyRef and KEDA secretTargetRef of the overlay."""
    refs = set()
    for _, spec in pod_specs(overlay):
        for item in container(spec).get("env", []):
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert not ref.get("optional"), (
                    f"{item['name']}: an optional secret missing would run without it, silently")
                refs.add((ref["name"], ref["key"]))
    for auth in objects(overlay, "TriggerAuthentication"):
        refs |= {(r["name"], r["key"]) for r in auth["spec"].get("secretTargetRef", [])}
    return refs


def test_local_secret_has_every_key_referenced() -> None:
    held = {(s["metadata"]["name"], k) for s in objects("local", "Secret")
            for k in {**s.get("data", {}), **s.get("stringData", {})}}
    assert secret_keys("local") <= held, secret_keys("local") - held


def test_the_production_secret_command_creates_every_key_referenced() -> None:
    """The production Secret is created by hand: the command that the overlay and the README give
    must create every key the pods and KEDA read."""
    texts = {"overlays/production/kustomization.yaml":
             (K8S / "overlays" / "production" / "kustomization.yaml").read_text(),
             "README.md": (REPO / "README.md").read_text()}
    for where, text in texts.items():
        commands = re.findall(r"kubectl (?:-n \S+ )?create secret generic (\S+)((?:[^\n]|\\\n)*"
                              r"(?:\n\s*#?\s*--from-literal[^\n]*)*)", text)
        assert commands, f"{where}: no `kubectl create secret generic` command"
        created = {(name, k) for name, rest in commands
                   for k in re.findall(r"--from-literal=([\w.-]+)=", rest)}
        missing = secret_keys("production") - created
        assert not missing, f"{where}: the Secret command does not create {sorted(missing)}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_commands_are_cli_subcommands_that_parse(overlay: str) -> None:
    expected = {f"StatefulSet/{WORKER}": "worker", "Job/distillguard-topics": "topics"}
    for name, spec in pod_specs(overlay):
        c = container(spec)
        assert "command" not in c, f"{name}: keep the image's entry point (distillguard)"
        args = [str(a) for a in c["args"]]
        try:
            parsed = build_parser().parse_args(args)
        except SystemExit:
            pytest.fail(f"{name}: `distillguard {shlex.join(args)}` does not parse")
        assert parsed.command == expected[name], f"{name} runs {parsed.command}"
    assert container(one(overlay, "Job")["spec"]["template"]["spec"])["args"] == ["topics",
                                                                                  "create"]


@cache
def worker_pages() -> frozenset[str]:
    """The paths the worker's web server answers (registered as a worker registers them)."""
    import faust

    from distillguard.streams.worker.health import install_health

    app = faust.App("k8s-test", broker="kafka://127.0.0.1:1")
    install_health(app, ["requests"], 60.0, watchdog=False)
    return frozenset(r.resource.canonical for r in app.web.web_app.router.routes()
                     if r.method == "GET")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_ask_the_workers_pages_on_the_port_it_listens_on(overlay: str) -> None:
    c = container(worker_set(overlay)["spec"]["template"]["spec"])
    s = worker_settings(overlay)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert s.web_bind == "0.0.0.0", "the kubelet probes the pod's address, not its loopback"
    probes = {k: c[k] for k in ("livenessProbe", "readinessProbe", "startupProbe")}
    for kind, probe in probes.items():
        port = probe["httpGet"]["port"]
        assert ports.get(port, port) == s.web_port, (
            f"{kind} asks port {port}, the worker listens on {s.web_port}")
        assert probe["httpGet"]["path"] in worker_pages(), (
            f"{kind}: {probe['httpGet']['path']} is not a page of the worker {sorted(worker_pages())}")
    assert probes["livenessProbe"]["httpGet"]["path"] == "/health"
    assert probes["readinessProbe"]["httpGet"]["path"] == "/ready"
    # The liveness probe must not restart a worker sooner than its own watchdog would (it exits
    # after stall_timeout_s), or a long recovery step becomes a restart loop.
    live = probes["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] >= s.stall_timeout_s


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_data_directory_is_on_the_workers_volume(overlay: str) -> None:
    spec = worker_set(overlay)["spec"]
    c = container(spec["template"]["spec"])
    claims = {t["metadata"]["name"] for t in spec["volumeClaimTemplates"]}
    data_dir = Path(worker_settings(overlay).data_dir)
    assert data_dir.is_absolute(), f"data_dir {data_dir} would depend on the working directory"
    mounts = [m for m in c["volumeMounts"] if data_dir.is_relative_to(m["mountPath"])]
    assert mounts and mounts[0]["name"] in claims, (
        f"data_dir {data_dir} is not on a volume of the volumeClaimTemplates {sorted(claims)}")


def dockerfile_uid() -> int:
    m = re.search(r"useradd\b[^&]*?--uid (\d+)", (REPO / "deploy" / "Dockerfile").read_text())
    assert m, "deploy/Dockerfile: no useradd --uid"
    return int(m.group(1))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_as_the_images_user(overlay: str) -> None:
    for name, spec in pod_specs(overlay):
        ctx = spec["securityContext"]
        assert ctx["runAsNonRoot"] and ctx["runAsUser"] == dockerfile_uid(), name
    assert worker_set(overlay)["spec"]["template"]["spec"]["securityContext"]["fsGroup"] == (
        dockerfile_uid()), "the volume must be writable to the image's user"


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "only matchLabels selectors are checked here"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_selectors_select_the_workers_and_only_them(overlay: str) -> None:
    workers = worker_set(overlay)
    worker_labels = workers["spec"]["template"]["metadata"]["labels"]
    job_labels = one(overlay, "Job")["spec"]["template"]["metadata"]["labels"]
    assert selects(workers["spec"]["selector"], worker_labels)
    pdb = one(overlay, "PodDisruptionBudget", WORKER)
    assert selects(pdb["spec"]["selector"], worker_labels)
    assert not selects(pdb["spec"]["selector"], job_labels), "the PDB would count the Job's pod"
    service = one(overlay, "Service", workers["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None", "the StatefulSet's service is headless"
    assert all(worker_labels.get(k) == v for k, v in service["spec"]["selector"].items())
    assert not all(job_labels.get(k) == v for k, v in service["spec"]["selector"].items())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_fleet_size_stays_within_the_partitions(overlay: str) -> None:
    """KEDA's maxReplicaCount is the requests topic's partition count (deploy/topics.toml); the
    StatefulSet names no count when KEDA owns it (an apply would write it back)."""
    partitions = worker_settings(overlay).partitions
    scaled = objects(overlay, "ScaledObject")
    replicas = worker_set(overlay)["spec"].get("replicas")
    if scaled:
        spec = scaled[0]["spec"]
        assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet",
                                          "name": WORKER}
        assert spec["maxReplicaCount"] == partitions, (
            f"maxReplicaCount {spec['maxReplicaCount']}: the requests topic has {partitions} "
            "partitions (deploy/topics.toml), a worker beyond them holds none")
        assert 2 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        assert replicas is None, "KEDA owns the count: the StatefulSet must not name one"
    else:
        assert replicas is not None and 1 <= replicas <= partitions


@pytest.mark.parametrize("overlay", ["production"])  # overlays/local has no autoscaler
def test_keda_reads_the_lag_of_the_workers_group_and_topic(overlay: str) -> None:
    c = container(worker_set(overlay)["spec"]["template"]["spec"])
    env, s = environment(overlay, c), worker_settings(overlay)
    (trigger,) = one(overlay, "ScaledObject")["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]

    def value(name: str) -> str:
        if f"{name}FromEnv" in meta:
            assert meta[f"{name}FromEnv"] in env, f"{name}FromEnv: no {meta[f'{name}FromEnv']}"
            return env[meta[f"{name}FromEnv"]]
        return str(meta[name])

    assert value("bootstrapServers") == s.kafka_bootstrap
    assert value("consumerGroup") == s.app_id, "the consumer group is the app id"
    assert value("topic") == s.topics["requests"].name
    assert meta.get("allowIdleConsumers", "false") == "false"
    # It logs in as the workers do.
    if s.security_protocol.startswith("SASL"):
        assert meta.get("sasl") == KEDA_SASL[str(s.sasl_mechanism)]
        auth = one(overlay, "TriggerAuthentication", trigger["authenticationRef"]["name"])
        password = next(i["valueFrom"]["secretKeyRef"] for i in c["env"]
                        if i["name"] == "DISTILLGUARD_SASL_PASSWORD")
        given = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
        assert given.get("password") == (password["name"], password["key"])
        from_env = {r["parameter"]: r["name"] for r in auth["spec"].get("env", [])}
        assert env.get(from_env.get("username", "")) == s.sasl_username
    else:
        assert "sasl" not in meta and "authenticationRef" not in trigger
    assert (meta.get("tls") == "enable") == s.security_protocol.endswith("SSL")


def test_production_deploys_this_version_and_local_the_compose_image() -> None:
    import tomllib

    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    for _, spec in pod_specs("production"):
        assert container(spec)["image"].rsplit(":", 1)[1] == version
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    compose_image = compose["x-distillguard"]["image"]
    for _, spec in pod_specs("local"):
        assert container(spec)["image"] == compose_image, (
            "overlays/local runs the image `docker compose build` makes")


def test_production_connects_over_sasl_ssl() -> None:
    s = worker_settings("production")
    assert s.security_protocol == "SASL_SSL" and s.sasl_mechanism and s.sasl_username
    assert s.internal_record_keys, "production signs the records between the stages"


def test_the_readme_names_overlays_that_exist() -> None:
    readme = (REPO / "README.md").read_text()
    named = set(re.findall(r"deploy/k8s/overlays/([\w-]+)", readme))
    assert named >= set(OVERLAYS), f"README.md does not mention {set(OVERLAYS) - named}"
    missing = [n for n in named if not (K8S / "overlays" / n / "kustomization.yaml").is_file()]
    assert not missing, f"README.md names overlays that do not exist: {missing}"
    assert "kubectl apply -k deploy/k8s/overlays/production" in readme
