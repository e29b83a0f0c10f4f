"""Kubernetes manifests, offline (no cluster, no Ray): every overlay renders with kustomize, core
objects pass kubernetes-validate's strict schemas, ray.io objects pass the KubeRay CRD schemas with
unknown fields rejected, the project's rules hold, planted mistakes are reported at their path, and
the `ringbit k8s` CLI does the same in a subprocess. Renders with kubectl/kustomize (integration tier).

The checks that render nothing (closed CRD schemas, the serve-config patch from a file) are in
tests/unit/test_k8s_schemas.py."""

from __future__ import annotations

import copy
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from conftest import REPO, ringbit
from ringbit.k8s import render as r
from ringbit.k8s import validate as v

CRDS = Path(__file__).resolve().parents[3] / "shared" / "kuberay-crds"
OVERLAYS = ("cpu", "gpu")
RAY_KINDS = ("RayCluster", "RayJob", "RayService")

needs_crds = pytest.mark.skipif(not CRDS.is_dir(), reason=f"KubeRay CRDs not found at {CRDS} (../shared/kuberay-crds)")
HAVE_KUSTOMIZE = bool(shutil.which("kubectl") or shutil.which("kustomize"))
needs_kustomize = pytest.mark.skipif(not HAVE_KUSTOMIZE, reason="neither kubectl nor kustomize is on PATH (renders the overlays)")


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    """What `kubectl apply -k manifests/overlays/<overlay>` applies (no serve-config injection)."""
    if not HAVE_KUSTOMIZE:
        pytest.skip("neither kubectl nor kustomize is on PATH (renders the overlays)")
    return {overlay: r.render(overlay, inject=False) for overlay in OVERLAYS}


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} objects"
    return found[0]


def cluster_specs(doc: dict) -> list[dict]:
    return [spec for _, spec in v.ray_cluster_specs(doc)]


def containers(doc: dict) -> list[dict]:
    """Every container and init container of every pod template in an object."""
    return [c for _, pod, _ in v.pod_specs(doc) for key in ("initContainers", "containers") for c in pod.get(key, [])]


def issues_of(docs: list[dict], source: str = "test") -> list[str]:
    return [str(i) for rep in v.validate_documents(docs, source, CRDS) for i in rep.issues]


def pinned_ray() -> str:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [m.group(1) for d in deps if (m := re.fullmatch(r"ray\[[^\]]*\]==([0-9.]+\*?)", d.strip()))]
    return pin


# ---------------------------------------------------------------------------------- rendering


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders(rendered, overlay):
    docs = rendered[overlay]
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(["Namespace", "PersistentVolumeClaim", "PersistentVolumeClaim", "Deployment", "Service",
                            "NetworkPolicy", "NetworkPolicy", "NetworkPolicy", "RayCluster", "RayJob", "RayJob",
                            "RayService"])
    assert all(d["metadata"].get("namespace") == "ringbit" for d in docs if d["kind"] != "Namespace")
    # The RayJobs and the RayService carry RayCluster/ringbit's spec (the overlay's replacement).
    cluster = one(docs, "RayCluster")["spec"]
    for doc in docs:
        if doc["kind"] in ("RayJob", "RayService"):
            assert cluster_specs(doc) == [cluster], doc["metadata"]["name"]


def test_gpu_overlay_adds_gpu_workers(rendered):
    groups = {g["groupName"]: g for g in one(rendered["gpu"], "RayCluster")["spec"]["workerGroupSpecs"]}
    assert set(groups) == {"cpu-workers", "gpu-workers"}
    limits = groups["gpu-workers"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"
    assert all(c["image"].endswith("-gpu") for c in containers(one(rendered["gpu"], "RayCluster")))
    assert all(c["image"].endswith("-cpu") for c in containers(one(rendered["cpu"], "RayCluster")))


# ---------------------------------------------------------------------------------- schemas


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_core_objects_validate_strictly(rendered, overlay):
    for doc in rendered[overlay]:
        if doc["kind"] not in RAY_KINDS:
            validator = v._core_validator(doc["apiVersion"], doc["kind"], v.DEFAULT_KUBERNETES_VERSION)
            assert validator is not None, doc["kind"]
            assert v.schema_issues(validator, doc, r.object_ref(doc)) == []
            assert v.project_issues(doc, pinned_ray()) == []


@needs_crds
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ray_objects_validate_against_closed_crds(rendered, overlay):
    import jsonschema

    schemas = v.load_crd_schemas(str(CRDS))
    for doc in rendered[overlay]:
        if doc["kind"] in RAY_KINDS:
            validator = jsonschema.Draft202012Validator(schemas[(doc["apiVersion"], doc["kind"])])
            assert v.schema_issues(validator, doc, r.object_ref(doc)) == []


@needs_crds
@pytest.mark.parametrize("overlay", OVERLAYS)
@needs_kustomize
def test_whole_overlay_is_valid(overlay):
    reports = v.validate_overlay(overlay, CRDS)
    assert [str(i) for rep in reports for i in rep.issues] == []
    assert len(reports) == 12


# ---------------------------------------------------------------------------------- project rules


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ray_version_and_image_tags_match_the_pin(rendered, overlay):
    pin = pinned_ray()
    assert pin.endswith(".*"), pin
    dockerfile = (REPO / "Dockerfile").read_text()
    (image_ray,) = re.findall(r"^ARG RAY_VERSION=(\S+)$", dockerfile, re.M)
    assert image_ray.startswith(pin[:-1])
    images = []
    for doc in rendered[overlay]:
        for spec in cluster_specs(doc):
            assert spec["rayVersion"] == image_ray
        images += [c["image"] for c in containers(doc)]
    assert images and all(img.split(":")[-1].startswith(f"{image_ray}-") for img in images), images


def test_rayjob_entrypoints_name_existing_scripts_and_configs(rendered):
    expected = {("cpu", "ringbit-pretrain"): ("jobs/pretrain.py", "jobs/configs/demo.yaml"),
                ("gpu", "ringbit-pretrain"): ("jobs/pretrain.py", "jobs/configs/1b-gpu.yaml"),
                ("cpu", "ringbit-sweep"): ("jobs/sweep.py", "jobs/configs/sweep.yaml"),
                ("gpu", "ringbit-sweep"): ("jobs/sweep.py", "jobs/configs/sweep.yaml")}
    for (overlay, name), (script, config) in expected.items():
        job = one(rendered[overlay], "RayJob", name)["spec"]
        assert shlex.split(job["entrypoint"]) == ["python", script, "--config", config]
        assert (REPO / script).is_file() and (REPO / config).is_file()
        assert job["shutdownAfterJobFinishes"] is True and job["ttlSecondsAfterFinished"] > 0
        assert yaml.safe_load(job["runtimeEnvYAML"])["working_dir"] == v.IMAGE_REPO_DIR


def test_serve_config_v2_is_serving_config_with_the_host_and_lm_routes_added(rendered):
    source = yaml.safe_load((REPO / "serving" / "config.yaml").read_text())
    routes = {a["name"]: a["route_prefix"] for a in source["applications"]}
    for overlay in OVERLAYS:
        for inject in (False, True):  # the committed patch (kubectl apply -k) and `ringbit k8s render`
            docs = rendered[overlay] if not inject else r.render(overlay)
            deployed = yaml.safe_load(one(docs, "RayService")["spec"]["serveConfigV2"])
            assert deployed["http_options"]["host"] == "0.0.0.0"
            deployed["http_options"]["host"] = source["http_options"]["host"]
            linked = 0
            for app in deployed["applications"]:  # each LM caller finds its LM's route on the cluster
                for key in [k for k in app["args"] if k.endswith("llm_app")]:
                    route = app["args"].pop(key.removesuffix("app") + "route")
                    assert route == routes[app["args"][key]], (app["name"], key)
                    linked += 1
            assert linked == 3  # evaluator -> evaluator-lm, agents -> lm and react-lm
            assert deployed == source, f"{overlay}: run `ringbit k8s sync`"
    assert r.sync_serve_config(check=True) is False, "manifests/base/serve-config.yaml is stale: ringbit k8s sync"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_security_defaults(rendered, overlay):
    docs = rendered[overlay]
    assert not [d for d in docs if d["kind"] == "Secret"]
    assert all(d["spec"].get("type", "ClusterIP") == "ClusterIP" for d in docs if d["kind"] == "Service")
    for doc in docs:
        for path, pod, is_ray in v.pod_specs(doc):
            assert pod["securityContext"]["runAsNonRoot"] is True, path
            volumes = {vol["name"]: vol for vol in pod["volumes"]}
            for c in pod.get("initContainers", []) + pod["containers"]:
                assert {"cpu", "memory"} <= set(c["resources"]["requests"]) & set(c["resources"]["limits"]), c["name"]
                assert c["securityContext"]["allowPrivilegeEscalation"] is False
                assert c["securityContext"]["readOnlyRootFilesystem"] is True
            for c in pod["containers"]:  # a read-only root: /tmp is a volume
                assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}, c["name"]
            if is_ray:
                mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
                assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
                env = {e["name"]: e.get("value") or e["valueFrom"] for e in pod["containers"][0]["env"]}
                assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000" and env["RAY_AUTH_MODE"] == "token"
                assert env["RAY_AUTH_TOKEN"] == {"secretKeyRef": {"name": "ringbit-ray-auth", "key": "auth_token"}}
        for spec in cluster_specs(doc):
            assert spec["authOptions"] == {"mode": "token", "secretName": "ringbit-ray-auth"}
            assert spec["enableInTreeAutoscaling"] is True
            assert spec["headGroupSpec"]["serviceType"] == "ClusterIP"
            assert all(0 <= g["minReplicas"] <= g["maxReplicas"] for g in spec["workerGroupSpecs"])
    policies = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "NetworkPolicy"}
    assert policies["ringbit-default-deny-ingress"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    assert policies["ringbit-ray"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "ray"
    assert policies["ringbit-mlflow"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "mlflow"
    mlflow = one(docs, "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]
    assert mlflow["args"][:2] == ["--backend-store-uri", "sqlite:////data/mlflow.db"]
    assert {"name": "MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "value": "false"} in mlflow["env"]


@needs_crds
@needs_kustomize
def test_postgres_component_renders_and_validates(tmp_path):
    manifests = os.path.relpath(REPO / "manifests", tmp_path)  # kustomize wants relative paths
    (tmp_path / "kustomization.yaml").write_text(
        f"resources: [{manifests}/overlays/cpu]\ncomponents: [{manifests}/components/mlflow-postgres]\n")
    docs = r.load_documents(r.kustomize(tmp_path), str(tmp_path))
    mlflow = one(docs, "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]
    assert "--backend-store-uri" not in mlflow["args"] and not any("sqlite" in a for a in mlflow["args"])
    env = {e["name"]: e for e in mlflow["env"]}
    assert env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"] == {"name": "ringbit-mlflow-db", "key": "uri"}
    assert issues_of(docs) == []


# ---------------------------------------------------------------------------------- planted mistakes


def _ray_cluster(docs):
    return one(docs, "RayCluster")["spec"]


PLANTED = {
    "integer rayStartParams": (
        lambda d: _ray_cluster(d)["headGroupSpec"]["rayStartParams"].__setitem__("num-cpus", 1),
        "RayCluster/ringbit: spec.headGroupSpec.rayStartParams.num-cpus: 1 is not of type 'string'"),
    "typo key": (
        lambda d: _ray_cluster(d)["headGroupSpec"]["template"]["spec"]["containers"][0].__setitem__("imagePullPolcy", "Always"),
        "RayCluster/ringbit: spec.headGroupSpec.template.spec.containers[0].imagePullPolcy: unknown field "
        "'imagePullPolcy' (did you mean 'imagePullPolicy'?)"),
    "missing container name": (
        lambda d: _ray_cluster(d)["workerGroupSpecs"][0]["template"]["spec"]["containers"][0].pop("name"),
        "RayCluster/ringbit: spec.workerGroupSpecs[0].template.spec.containers[0].name: 'name' is a required property"),
    "typo in a RayJob's cluster": (
        lambda d: one(d, "RayJob", "ringbit-sweep")["spec"]["rayClusterSpec"].__setitem__("enableInTreeAutoScaling", True),
        "RayJob/ringbit-sweep: spec.rayClusterSpec.enableInTreeAutoScaling: unknown field 'enableInTreeAutoScaling' "
        "(did you mean 'enableInTreeAutoscaling'?)"),
    "typo in a Deployment (core, strict)": (
        lambda d: one(d, "Deployment")["spec"]["template"]["spec"]["containers"][0].__setitem__("portz", []),
        "Deployment/mlflow: spec.template.spec.containers[0].portz: unknown field 'portz' (did you mean 'ports'?)"),
    "typo in custom resource metadata": (
        lambda d: one(d, "RayService")["metadata"].__setitem__("lables", {}),
        "RayService/ringbit-serve: metadata.lables: unknown field 'lables' (did you mean 'labels'?)"),
    "rayVersion off the pin": (
        lambda d: _ray_cluster(d).__setitem__("rayVersion", "2.59.0"),
        "RayCluster/ringbit: spec.rayVersion: '2.59.0' does not match ray==2.60.* in pyproject.toml"),
    "image tag off the Ray version": (
        lambda d: _ray_cluster(d)["headGroupSpec"]["template"]["spec"]["containers"][0].__setitem__("image", "ringbit:latest"),
        "RayCluster/ringbit: spec.headGroupSpec.template.spec.containers[0].image: image 'ringbit:latest': the tag "
        "must start with the Ray version 2.60.0 (ray==2.60.* in pyproject.toml)"),
    "entrypoint config missing": (
        lambda d: one(d, "RayJob", "ringbit-pretrain")["spec"].__setitem__(
            "entrypoint", "python jobs/pretrain.py --config jobs/configs/nope.yaml"),
        "RayJob/ringbit-pretrain: spec.entrypoint: jobs/configs/nope.yaml does not exist in the repository"),
    "sidecar before the Ray container": (
        lambda d: _ray_cluster(d)["headGroupSpec"]["template"]["spec"]["containers"].insert(
            0, {"name": "logs", "image": "fluent/fluent-bit:3.0",
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "10m", "memory": "16Mi"}}}),
        "RayCluster/ringbit: spec.headGroupSpec.template.spec.containers[0]: the Ray container must be first "
        "(KubeRay configures containers[0]); found 'logs' with image 'fluent/fluent-bit:3.0'"),
    "stale serveConfigV2": (
        lambda d: one(d, "RayService")["spec"].__setitem__("serveConfigV2", "applications: []\n"),
        "RayService/ringbit-serve: spec.serveConfigV2: differs from serving/config.yaml"),
    "container without limits": (
        lambda d: one(d, "Deployment")["spec"]["template"]["spec"]["containers"][0]["resources"].pop("limits"),
        "Deployment/mlflow: spec.template.spec.containers[0].resources.limits: container 'mlflow' sets no limits "
        "for cpu and memory"),
    "token auth off": (
        lambda d: _ray_cluster(d).pop("authOptions"),
        "RayCluster/ringbit: spec.authOptions: Ray token auth must be on"),
    "a literal secret": (
        lambda d: one(d, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"].append(
            {"name": "DB_PASSWORD", "value": "hunter2"}),
        "Deployment/mlflow: spec.template.spec.containers[0].env[2].value: DB_PASSWORD is a literal value"),
    "dashboard exposed": (
        lambda d: _ray_cluster(d)["headGroupSpec"].__setitem__("serviceType", "LoadBalancer"),
        "RayCluster/ringbit: spec.headGroupSpec.serviceType: 'LoadBalancer' exposes the dashboard"),
}


@needs_crds
@pytest.mark.parametrize("mistake", PLANTED)
def test_planted_mistake_is_reported_at_its_path(rendered, mistake):
    plant, expected = PLANTED[mistake]
    docs = copy.deepcopy(rendered["cpu"])
    plant(docs)
    issues = issues_of(docs)
    assert any(i.startswith(expected) for i in issues), "\n".join(issues)


# ---------------------------------------------------------------------------------- CLI


@needs_kustomize
def test_cli_render_prints_the_overlay():
    proc = ringbit("k8s", "render", "--overlay", "gpu", timeout=120)
    assert proc.returncode == 0, proc.stderr
    docs = list(yaml.safe_load_all(proc.stdout))
    assert one(docs, "RayJob", "ringbit-pretrain")["spec"]["entrypoint"].endswith("jobs/configs/1b-gpu.yaml")
    only = ringbit("k8s", "render", "--only", "RayJob/ringbit-sweep", timeout=120)
    assert only.returncode == 0, only.stderr
    assert [d["kind"] for d in yaml.safe_load_all(only.stdout)] == ["RayJob"]


@needs_crds
@needs_kustomize
def test_cli_validates_every_overlay():
    env = {k: value for k, value in os.environ.items() if k != v.CRDS_ENV}  # the default CRD directory
    proc = subprocess.run([sys.executable, "-m", "ringbit.cli", "k8s", "validate"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "24 objects valid" in proc.stdout
    assert re.search(r"cpu\s+.\s+RayCluster\s+.\s+ringbit\s+.\s+ok", proc.stdout)


@needs_crds
def test_cli_rejects_a_bad_file_with_the_path(rendered, tmp_path):
    docs = copy.deepcopy(rendered["cpu"])
    _ray_cluster(docs)["headGroupSpec"]["rayStartParams"]["num-cpus"] = 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(r.dump_documents(docs))
    proc = ringbit("k8s", "validate", "--file", str(bad), "--crds", str(CRDS), timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "RayCluster/ringbit: spec.headGroupSpec.rayStartParams.num-cpus: 1 is not of type 'string'" in proc.stdout
    good = tmp_path / "good.yaml"
    good.write_text(r.dump_documents(rendered["gpu"]))
    assert ringbit("k8s", "validate", "-f", str(good), "--crds", str(CRDS), timeout=300).returncode == 0


@needs_kustomize
def test_cli_usage_errors_exit_2(tmp_path):
    proc = ringbit("k8s", "validate", "--overlay", "arm", timeout=120)
    assert proc.returncode == 2 and "unknown overlay 'arm'" in proc.stderr, proc.stderr
    proc = ringbit("k8s", "validate", "--overlay", "cpu", "--crds", str(tmp_path / "none"), timeout=120)
    assert proc.returncode == 2 and "RINGBIT_KUBERAY_CRDS" in proc.stderr, proc.stderr
    proc = ringbit("k8s", "validate", "--file", str(tmp_path / "missing.yaml"), timeout=120)
    assert proc.returncode == 2 and "missing.yaml" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert ringbit("k8s", "sync", "--check", timeout=120).returncode == 0
