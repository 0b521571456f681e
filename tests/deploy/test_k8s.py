"""The Kubernetes manifests (deploy/k8s/): valid for the Kubernetes version that
docs/deployment.md names, and consistent with the images, the CLI and each other.

Core kinds are validated offline against that version's schemas with kubernetes-validate,
in strict mode (an unknown field is an error). The two prometheus-operator resources, the
ServiceMonitor and the generated PrometheusRule, are custom resources without a schema
there: they are validated structurally against the small JSON schemas below (apiVersion,
kind, required keys, the fields this project uses, and nothing else). The commands the
pods run are parsed with the real `deepfake-monitor` argument parser, after running the
Jobs' shell scripts with stub programs that record how they are called.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.cli import build_parser
from monitor.live.config import TOKEN_ENV, load_config
from monitor.mixin import load_mixin_config
from tests.support import REPO_ROOT

K8S = REPO_ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.33"  # named in docs/deployment.md; has the pod-index label (>= 1.28)
PROMETHEUS_RULE = REPO_ROOT / "deploy" / "monitoring" / "kubernetes" / "prometheusrule.yaml"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
ONE_OFF_JOBS = {"score-job.yaml", "train-job.yaml"}  # applied on their own, not by kustomize
GPU_DOCKERFILE = REPO_ROOT / "deploy" / "docker" / "Dockerfile.gpu"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"

# --- structural schemas of the two custom resources ---------------------------------------

DURATION = {"type": "string", "pattern": r"^(0|([0-9]+(ms|s|m|h|d|w|y))+)$"}
STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string", "minLength": 1}, "labels": STRINGS},
}


def _resource(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": METADATA,
            "spec": spec,
        },
    }


SERVICE_MONITOR = _resource(
    "monitoring.coreos.com/v1",
    "ServiceMonitor",
    {
        "type": "object",
        "required": ["selector", "endpoints"],
        "additionalProperties": False,
        "properties": {
            "jobLabel": {"type": "string"},
            "selector": {
                "type": "object",
                "additionalProperties": False,
                "minProperties": 1,
                "properties": {"matchLabels": STRINGS, "matchExpressions": {"type": "array"}},
            },
            "namespaceSelector": {"type": "object"},
            "endpoints": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "anyOf": [{"required": ["port"]}, {"required": ["targetPort"]}],
                    "properties": {
                        "port": {"type": "string"},
                        "targetPort": {"type": ["string", "integer"]},
                        "path": {"type": "string", "pattern": "^/"},
                        "scheme": {"enum": ["http", "https"]},
                        "interval": DURATION,
                        "scrapeTimeout": DURATION,
                        "honorLabels": {"type": "boolean"},
                        "relabelings": {"type": "array"},
                        "metricRelabelings": {"type": "array"},
                    },
                },
            },
        },
    },
)
_RULE_COMMON = {"expr": {"type": "string", "minLength": 1}, "labels": STRINGS}
PROMETHEUS_RULE_SCHEMA = _resource(
    "monitoring.coreos.com/v1",
    "PrometheusRule",
    {
        "type": "object",
        "required": ["groups"],
        "additionalProperties": False,
        "properties": {
            "groups": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["name", "rules"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string"},
                        "interval": DURATION,
                        "rules": {
                            "type": "array",
                            "items": {
                                "oneOf": [
                                    {
                                        "type": "object",
                                        "required": ["record", "expr"],
                                        "additionalProperties": False,
                                        "properties": {
                                            "record": {"type": "string"},
                                            **_RULE_COMMON,
                                        },
                                    },
                                    {
                                        "type": "object",
                                        "required": ["alert", "expr"],
                                        "additionalProperties": False,
                                        "properties": {
                                            "alert": {"type": "string"},
                                            "for": DURATION,
                                            "keep_firing_for": DURATION,
                                            "annotations": STRINGS,
                                            **_RULE_COMMON,
                                        },
                                    },
                                ]
                            },
                        },
                    },
                },
            }
        },
    },
)
CUSTOM_RESOURCES = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR,
    ("monitoring.coreos.com/v1", "PrometheusRule"): PROMETHEUS_RULE_SCHEMA,
}


# --- helpers ---------------------------------------------------------------------------------


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def resource(kind: str, name: str) -> dict[str, Any]:
    for path in MANIFESTS:
        for doc in documents(path):
            if doc["kind"] == kind and doc["metadata"]["name"] == name:
                return doc
    raise AssertionError(f"no {kind} {name} in deploy/k8s/")


def problems(doc: dict[str, Any]) -> list[str]:
    """Why `doc` is not a valid resource for KUBERNETES_VERSION (empty when it is)."""
    schema = CUSTOM_RESOURCES.get((doc.get("apiVersion"), doc.get("kind")))
    if schema is not None:
        jsonschema = pytest.importorskip("jsonschema", reason="pip install kubernetes-validate")
        validator = jsonschema.Draft202012Validator(schema)
        return [
            f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
            for e in validator.iter_errors(doc)
        ]
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    try:
        kv.validate(doc, KUBERNETES_VERSION, strict=True)
    except kv.ValidationError as exc:
        return [f"{'.'.join(map(str, exc.path))}: {exc.message}"]
    except kv.SchemaNotFoundError as exc:
        return [f"no schema: {exc.message}"]
    return []


def container(workload: dict[str, Any]) -> dict[str, Any]:
    (c,) = workload["spec"]["template"]["spec"]["containers"]
    return c


def env_values(c: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}


def run_pod_script(c: dict[str, Any], tmp_path: Path, **extra: str) -> list[list[str]]:
    """Run a `/bin/sh -c SCRIPT` container's script with stubs for the programs it starts;
    returns each stubbed call's argv."""
    assert c["command"] == ["/bin/sh", "-c"], c["command"]
    (script,) = c["args"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    for name in ("deepfake-monitor", "torchrun", "mkdir"):
        stub = bin_dir / name
        stub.write_text(
            f'#!/bin/sh\nfor a in {name} "$@"; do printf "%s\\037" "$a"; done >> "$STUB_LOG"\n'
            'printf "\\n" >> "$STUB_LOG"\n'
        )
        stub.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "STUB_LOG": str(log), **env_values(c), **extra}
    subprocess.run(["/bin/sh", "-c", script], env=env, check=True, timeout=30)
    return [line.split("\x1f")[:-1] for line in log.read_text().splitlines()]


def mount_sources(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """mountPath -> the pod volume mounted there."""
    pod = workload["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for template in workload["spec"].get("volumeClaimTemplates", []):
        volumes[template["metadata"]["name"]] = {"volumeClaimTemplate": template}
    return {m["mountPath"]: volumes[m["name"]] for m in container(workload)["volumeMounts"]}


def _under(path: str, mounts: dict[str, Any]) -> dict[str, Any]:
    for mount_path, volume in mounts.items():
        if Path(path).is_relative_to(mount_path):
            return volume
    raise AssertionError(f"{path} is on no volume")


# --- validity ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [*MANIFESTS, PROMETHEUS_RULE], ids=lambda p: p.name)
def test_manifest_is_valid_for_the_named_kubernetes_version(path: Path) -> None:
    docs = documents(path)
    assert docs
    for doc in docs:
        assert problems(doc) == [], f"{path.name}: {doc['kind']}/{doc['metadata']['name']}"


def test_invalid_resources_are_refused() -> None:
    statefulset = resource("StatefulSet", "deepfake-monitor")
    bad = yaml.safe_load(yaml.safe_dump(statefulset))
    container(bad)["securityContext"]["readOnlyRootFileSystem"] = True  # misspelt
    bad["spec"]["replicas"] = "3"
    found = problems(bad)
    assert found and ("readOnlyRootFileSystem" in found[0] or "replicas" in found[0])
    monitor = yaml.safe_load(yaml.safe_dump(resource("ServiceMonitor", "deepfake-monitor")))
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    assert any("intervall" in p for p in problems(monitor))
    rule = documents(PROMETHEUS_RULE)[0]
    rule["spec"]["groups"][0]["rules"][0]["for"] = "ten seconds"
    assert problems(rule)


def test_the_docs_name_the_validated_kubernetes_version() -> None:
    docs = (REPO_ROOT / "docs" / "deployment.md").read_text()
    assert f"Kubernetes {KUBERNETES_VERSION}" in docs


def test_kustomization_lists_the_live_monitor() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    listed = kustomization["resources"]
    assert all((K8S / r).is_file() for r in listed), listed
    assert set(listed) == {p.name for p in MANIFESTS} - ONE_OFF_JOBS
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: the kustomization is checked without rendering")
    rendered = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60
    )
    assert rendered.returncode == 0, rendered.stderr
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    assert len(docs) == sum(len(documents(K8S / r)) for r in listed)
    for doc in docs:
        assert problems(doc) == [], doc["metadata"]["name"]


# --- the live monitor ---------------------------------------------------------------------


def test_each_replica_serves_its_own_shard_and_together_they_cover_every_stream(
    tmp_path: Path,
) -> None:
    sts = resource("StatefulSet", "deepfake-monitor")
    c = container(sts)
    replicas = sts["spec"]["replicas"]
    assert replicas > 1 and int(env_values(c)["SHARDS"]) == replicas
    (pod_index,) = [e for e in c["env"] if e["name"] == "POD_INDEX"]
    field = pod_index["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == f"metadata.labels['{POD_INDEX_LABEL}']"
    assert "command" not in c  # the image's entrypoint builds the engine first

    config = load_config(_config_file(tmp_path))
    owners: dict[str, list[int]] = {s.id: [] for s in config.streams}
    for i in range(replicas):
        argv = [
            a.replace("$(POD_INDEX)", str(i)).replace("$(SHARDS)", str(replicas)) for a in c["args"]
        ]
        assert argv[0] == "deepfake-monitor"
        args = build_parser().parse_args(argv[1:])
        assert args.command == "serve" and args.shard == f"{i}/{replicas}"
        mine = config.model_copy(update={"shard": args.shard}).own_streams()
        for stream in mine:
            owners[stream.id].append(i)
    assert all(len(replicas_) == 1 for replicas_ in owners.values()), owners
    used = {i for indexes in owners.values() for i in indexes}
    assert len(used) > 1  # the example list spreads over the replicas


def _config_file(tmp_path: Path) -> Path:
    """The ConfigMap's monitor.yaml, where the pod's --config reads it."""
    sts = resource("StatefulSet", "deepfake-monitor")
    c = container(sts)
    config_path = c["args"][c["args"].index("--config") + 1]
    volume = _under(config_path, mount_sources(sts))
    cm = resource("ConfigMap", volume["configMap"]["name"])
    (mount,) = [m for m in c["volumeMounts"] if Path(config_path).is_relative_to(m["mountPath"])]
    key = str(Path(config_path).relative_to(mount["mountPath"]))
    out = tmp_path / "monitor.yaml"
    out.write_text(cm["data"][key])
    return out


def test_the_monitor_pod_is_a_locked_down_gpu_pod(tmp_path: Path) -> None:
    sts = resource("StatefulSet", "deepfake-monitor")
    c = container(sts)
    config = load_config(_config_file(tmp_path))
    (port,) = c["ports"]
    assert port["containerPort"] == config.server.port and config.server.host == "0.0.0.0"
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"

    resources = c["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == 1
    assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"]

    security = c["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    mounts = mount_sources(sts)
    assert "emptyDir" in mounts["/tmp"]
    for written in filter(None, [config.events.path, config.timeline.dir, Path(config.model)]):
        volume = _under(str(written), mounts)
        assert "volumeClaimTemplate" in volume, f"{written} is not on the pod's own volume"

    (token,) = [e for e in c["env"] if e["name"] == TOKEN_ENV]
    assert set(token["valueFrom"]) == {"secretKeyRef"}
    env = env_values(c)
    assert env["DEEPFAKE_ENGINE"] == config.model  # what the entrypoint builds is served
    assert _under(env["DEEPFAKE_ONNX"], mounts)["persistentVolumeClaim"]["readOnly"] is True


@pytest.mark.parametrize(
    ("kind", "name"),
    [("StatefulSet", "deepfake-monitor"), ("Job", "deepfake-train"), ("Job", "deepfake-score")],
)
def test_every_pod_runs_as_the_images_user(kind: str, name: str) -> None:
    uid = re.search(r"^USER (\d+)", GPU_DOCKERFILE.read_text(), re.M)
    assert uid is not None
    security = resource(kind, name)["spec"]["template"]["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == security["fsGroup"] == int(uid.group(1))


def test_services_and_the_servicemonitor_reach_the_pods_once() -> None:
    sts = resource("StatefulSet", "deepfake-monitor")
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    port_name = container(sts)["ports"][0]["name"]
    headless = resource("Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    service = resource("Service", "deepfake-monitor")
    for svc in (service, headless):
        assert svc["spec"]["selector"].items() <= pod_labels.items()
        assert [p["targetPort"] for p in svc["spec"]["ports"]] == [port_name]

    monitor = resource("ServiceMonitor", "deepfake-monitor")
    selector = monitor["spec"]["selector"]["matchLabels"].items()
    assert selector <= service["metadata"]["labels"].items()
    assert not selector <= headless["metadata"]["labels"].items()  # scraped once, not twice
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    # the job label is the Service's name; the mixin's rules and dashboard select it
    assert "jobLabel" not in monitor["spec"]
    job = service["metadata"]["name"]
    assert load_mixin_config(REPO_ROOT / "deploy" / "monitoring" / "mixin.yaml").selector == (
        f'job="{job}"'
    )


# --- the Jobs ------------------------------------------------------------------------------


def test_training_job_runs_torchrun_with_rendezvous_at_pod_0(tmp_path: Path) -> None:
    job = resource("Job", "deepfake-train")
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    c = container(job)
    env = env_values(c)
    nodes = int(env["NODES"])
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == nodes > 1
    assert int(env["GPUS_PER_NODE"]) == c["resources"]["limits"]["nvidia.com/gpu"]

    service = resource("Service", pod["subdomain"])
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {"batch.kubernetes.io/job-name": job["metadata"]["name"]}

    (torchrun,) = run_pod_script(c, tmp_path)
    assert torchrun[0] == "torchrun"
    flags = dict(zip(torchrun[1::2], torchrun[2::2], strict=False))
    assert flags["--nnodes"] == str(nodes)
    assert flags["--nproc-per-node"] == env["GPUS_PER_NODE"]
    assert flags["--rdzv-backend"] == "c10d"
    host, port = flags["--rdzv-endpoint"].split(":")
    assert host == f"{job['metadata']['name']}-0.{pod['subdomain']}"  # pod 0's stable name
    assert int(port) == service["spec"]["ports"][0]["port"] == c["ports"][0]["containerPort"]

    module = torchrun.index("-m")
    assert torchrun[module + 1] == "monitor.cli"
    args = build_parser().parse_args(torchrun[module + 2 :])
    assert args.command == "train" and args.config == "cpu224native"
    assert (REPO_ROOT / "train" / "recipes" / f"{args.config}.yaml").is_file()
    assert not args.resume  # no last.pt yet: a fresh run
    mounts = mount_sources(job)
    for path in (args.data_dir, args.out, args.cache_dir):
        assert "persistentVolumeClaim" in _under(path, mounts), path
    assert _under(args.data_dir, mounts)["persistentVolumeClaim"]["readOnly"] is True
    assert "emptyDir" in mounts["/tmp"]
    assert container(job)["securityContext"]["readOnlyRootFilesystem"] is True


def test_scoring_job_scores_its_shard(tmp_path: Path) -> None:
    job = resource("Job", "deepfake-score")
    c = container(job)
    shards = int(env_values(c)["SHARDS"])
    assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == shards
    calls = run_pod_script(c, tmp_path, JOB_COMPLETION_INDEX="2")
    assert calls[0][0] == "mkdir"
    (score,) = [call[1:] for call in calls if call[0] == "deepfake-monitor"]
    args = build_parser().parse_args(score)
    assert args.command == "score" and args.shard == f"2/{shards}" and args.resume
    mounts = mount_sources(job)
    for path in (args.data, args.model, args.out):
        assert "persistentVolumeClaim" in _under(path, mounts), path


@pytest.mark.parametrize("name", ["deepfake-train", "deepfake-score"])
def test_job_scripts_are_posix_sh(name: str) -> None:
    (script,) = container(resource("Job", name))["args"]
    subprocess.run(["/bin/sh", "-n", "-c", script], check=True, timeout=30, env=dict(os.environ))
