"""Validate Kubernetes objects offline, each error named by object and JSON path:

    RayCluster/ringbit: spec.headGroupSpec.rayStartParams.num-cpus: 1 is not of type 'string'

- core kinds (Deployment, Service, NetworkPolicy, ...): kubernetes-validate's strict schemas for
  one Kubernetes version (unknown fields are errors);
- ray.io kinds: the openAPIV3Schema of each KubeRay CRD (a directory of CRD YAMLs), closed first:
  additionalProperties: false on every object schema that lists properties and does not preserve
  unknown fields, so a typo fails as the API server would prune it silently;
- the project's rules (`project_issues`): Ray version pin, entrypoints, serve config, Ray
  container first, string rayStartParams, resources, token auth, no secrets, ClusterIP only.

What needs a cluster (CEL rules, webhooks, admission policies, images, RBAC) is not checked.
"""

from __future__ import annotations

import copy
import difflib
import functools
import os
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml

from ringbit.k8s import DEFAULT_KUBERNETES_VERSION
from ringbit.k8s.render import REPO, K8sError, cluster_serve_config, load_documents, object_ref

CRDS_ENV = "RINGBIT_KUBERAY_CRDS"
DEFAULT_CRDS = REPO.parent / "shared" / "kuberay-crds"
RAY_GROUP = "ray.io"
IMAGE_REPO_DIR = "/opt/ringbit"  # the repository copy inside the image (Dockerfile WORKDIR)
# Image names (last path component) that carry Ray: their tag must start with the Ray version.
RAY_IMAGES = frozenset({"ringbit", "ray", "ray-ml", "ray-llm"})
SECRET_ENV = re.compile(r"TOKEN|PASSWORD|PASSWD|SECRET|CREDENTIAL|API_KEY|ACCESS_KEY|PRIVATE_KEY", re.I)
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
MAX_MESSAGE = 300


@dataclass(frozen=True)
class Issue:
    obj: str  # Kind/name
    path: str  # JSON path in the object; "" = the object as a whole
    message: str

    def __str__(self) -> str:
        return f"{self.obj}: {self.path}: {self.message}" if self.path else f"{self.obj}: {self.message}"


@dataclass
class ObjectReport:
    source: str  # overlay name or file
    kind: str
    name: str
    issues: list[Issue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.issues


# ---------------------------------------------------------------------------------- paths


def json_path(parts: Iterable[str | int]) -> str:
    """('spec', 'containers', 0, 'name') -> 'spec.containers[0].name'; odd keys quoted."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_-]+", part):
            out += f".{part}" if out else part
        else:
            out += f'["{part}"]'
    return out


def _d(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _l(value: Any) -> list:
    return value if isinstance(value, list) else []


def _short(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"


# ---------------------------------------------------------------------------------- schemas


def close_schema(node: Any) -> Any:
    """additionalProperties: false on every object schema with properties that does not set
    x-kubernetes-preserve-unknown-fields (in place; returns node)."""
    if isinstance(node, list):
        for item in node:
            close_schema(item)
    elif isinstance(node, dict):
        if ("properties" in node and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            node["additionalProperties"] = False
        for key in ("properties", "patternProperties"):
            for sub in _d(node.get(key)).values():
                close_schema(sub)
        for key in ("items", "additionalProperties", "not", "anyOf", "allOf", "oneOf"):
            if isinstance(node.get(key), (dict, list)):
                close_schema(node[key])
    return node


def crd_directory(explicit: str | Path | None = None) -> Path:
    """--crds, else $RINGBIT_KUBERAY_CRDS, else ../shared/kuberay-crds next to the repository."""
    return Path(explicit or os.environ.get(CRDS_ENV) or DEFAULT_CRDS).expanduser().resolve()


@functools.lru_cache(maxsize=4)
def load_crd_schemas(directory: str) -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> closed openAPIV3Schema, for every CRD version in the directory."""
    path = Path(directory)
    hint = (f"pass --crds DIR or set {CRDS_ENV} to a directory of KubeRay CRD YAMLs "
            "(ray-operator/config/crd/bases/ in github.com/ray-project/kuberay)")
    if not path.is_dir():
        raise K8sError(f"KubeRay CRD directory {path} does not exist: {hint}")
    schemas: dict[tuple[str, str], dict] = {}
    for file in sorted(path.glob("*.y*ml")):
        for doc in load_documents(file.read_text(), str(file)):
            if doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = _d(doc.get("spec"))
            kind = _d(spec.get("names")).get("kind")
            for version in _l(spec.get("versions")):
                schema = _d(_d(version.get("schema")).get("openAPIV3Schema"))
                if kind and schema:
                    schemas[(f"{spec.get('group')}/{version.get('name')}", kind)] = close_schema(copy.deepcopy(schema))
    if not schemas:
        raise K8sError(f"no CustomResourceDefinitions in {path}: {hint}")
    return schemas


@functools.lru_cache(maxsize=4)
def _core(version: str) -> tuple[str, Any, dict]:
    """(kubernetes-validate schema dir, referencing registry with its definitions, definitions)."""
    from packaging.version import Version
    from referencing import Registry, Resource
    from kubernetes_validate import utils as kv

    if not re.fullmatch(r"v?\d+\.\d+(\.\d+)?", version):
        raise K8sError(f"--kubernetes-version {version!r}: expected MAJOR.MINOR, e.g. {DEFAULT_KUBERNETES_VERSION}")
    wanted = Version(kv.major_minor(version.lstrip("v")))
    known = [v for v in kv.all_versions() if Version(kv.major_minor(v)) <= wanted]
    if not known or wanted > Version(kv.major_minor(kv.latest_version())):
        raise K8sError(f"--kubernetes-version {version}: kubernetes-validate has schemas for "
                       f"{kv.all_versions()[0]} to {kv.latest_version()}")
    schema_dir = f"kubernetes-json-schema/v{known[-1]}-local-strict"
    definitions = kv.schema_contents(f"{schema_dir}/_definitions.json", version)
    return schema_dir, Resource.from_contents(definitions) @ Registry(), definitions


def _core_validator(api_version: str, kind: str, version: str):
    """A validator for a core kind, or None when kubernetes-validate has no schema for it."""
    import jsonschema
    from kubernetes_validate import utils as kv
    from referencing import Resource

    schema_dir, registry, _ = _core(version)
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = kv.schema_contents(f"{schema_dir}/{kind.lower()}-{group_version}.json", version)
    except FileNotFoundError:
        return None
    return jsonschema.Draft202012Validator(schema, registry=Resource.from_contents(schema) @ registry)


def _metadata_validator(version: str):
    """Strict ObjectMeta, for custom resources (their CRDs only say `metadata: object`)."""
    import jsonschema

    _, registry, definitions = _core(version)
    ref = f"{definitions['$id']}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    return jsonschema.Draft202012Validator({"$ref": ref}, registry=registry)


def schema_issues(validator, instance: Any, obj: str, prefix: tuple = ()) -> list[Issue]:
    """Every error of a jsonschema validator, at the path of the offending field: an unknown
    field and a missing required one are named themselves, not their parent."""
    issues = []
    for err in validator.iter_errors(instance):
        path = (*prefix, *err.absolute_path)
        if err.validator == "additionalProperties" and err.validator_value is False and isinstance(err.instance, dict):
            known = list(_d(err.schema.get("properties")))
            patterns = list(_d(err.schema.get("patternProperties")))
            for key in err.instance:
                if key not in known and not any(re.search(p, key) for p in patterns):
                    close = difflib.get_close_matches(key, known, n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    issues.append(Issue(obj, json_path((*path, key)), f"unknown field {key!r}{hint}"))
        elif err.validator == "required" and (m := re.match(r"'(.+)' is a required property", err.message)):
            issues.append(Issue(obj, json_path((*path, m.group(1))), err.message))
        else:
            issues.append(Issue(obj, json_path(path), _short(err.message)))
    return issues


# ---------------------------------------------------------------------------------- project rules


def ray_pin(pyproject: Path = REPO / "pyproject.toml") -> str:
    """The Ray version pyproject.toml pins, e.g. '2.60.*' from ray[...]==2.60.*."""
    try:
        deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise K8sError(f"cannot read the Ray pin from {pyproject}: {exc}") from None
    for dep in deps:
        if m := re.fullmatch(r"\s*ray\s*(\[[^\]]*\])?\s*==\s*([0-9][0-9.]*(\.\*)?)\s*", dep):
            return m.group(2)
    raise K8sError(f"{pyproject}: no `ray==X.Y.*` dependency to check the manifests against")


def version_matches(version: Any, pin: str) -> bool:
    """'2.60.0' matches '2.60.*' and '2.60.0'."""
    if not isinstance(version, str) or not re.fullmatch(r"\d+(\.\d+)*", version):
        return False
    return version.startswith(pin[:-1]) if pin.endswith(".*") else version == pin


def split_image(image: str) -> tuple[str, str | None]:
    """('registry/x/ringbit', '2.60.0-cpu') from 'registry/x/ringbit:2.60.0-cpu@sha256:…'."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
        return name, tag
    return name, None


def is_ray_image(image: Any) -> bool:
    return isinstance(image, str) and split_image(image)[0].rsplit("/", 1)[-1] in RAY_IMAGES


def ray_cluster_specs(doc: dict) -> list[tuple[tuple, dict]]:
    """(path, RayClusterSpec) of a RayCluster, a RayJob's own cluster, a RayService's cluster."""
    spec = _d(doc.get("spec"))
    where = {"RayCluster": ("spec",), "RayJob": ("spec", "rayClusterSpec"),
             "RayService": ("spec", "rayClusterConfig")}.get(doc.get("kind", ""))
    if where is None:
        return []
    cluster = spec if len(where) == 1 else spec.get(where[1])
    return [(where, cluster)] if isinstance(cluster, dict) else []


def pod_specs(doc: dict) -> Iterator[tuple[tuple, dict, bool]]:
    """(path, PodSpec, is_ray_pod) of every pod template in an object."""
    kind, spec = doc.get("kind"), _d(doc.get("spec"))
    for prefix, cluster in ray_cluster_specs(doc):
        head = _d(cluster.get("headGroupSpec"))
        yield (*prefix, "headGroupSpec", "template", "spec"), _d(_d(head.get("template")).get("spec")), True
        for i, group in enumerate(_l(cluster.get("workerGroupSpecs"))):
            template = _d(_d(group).get("template"))
            yield (*prefix, "workerGroupSpecs", i, "template", "spec"), _d(template.get("spec")), True
    if kind == "RayJob" and "submitterPodTemplate" in spec:
        yield ("spec", "submitterPodTemplate", "spec"), _d(_d(spec["submitterPodTemplate"]).get("spec")), False
    if kind in POD_TEMPLATE_KINDS:
        yield ("spec", "template", "spec"), _d(_d(spec.get("template")).get("spec")), False
    elif kind == "CronJob":
        template = _d(_d(_d(spec.get("jobTemplate")).get("spec")).get("template"))
        yield ("spec", "jobTemplate", "spec", "template", "spec"), _d(template.get("spec")), False
    elif kind == "Pod":
        yield ("spec",), spec, False


def _resources_issues(obj: str, path: tuple, resources: Any, what: str) -> list[Issue]:
    issues = []
    for section in ("requests", "limits"):
        values = _d(_d(resources).get(section))
        missing = [r for r in ("cpu", "memory") if r not in values]
        if missing:
            issues.append(Issue(obj, json_path((*path, "resources", section)),
                                f"{what} sets no {section} for {' and '.join(missing)}"))
    return issues


def _container_issues(obj: str, path: tuple, container: dict, pin: str, ray_version: Any) -> list[Issue]:
    name = container.get("name") or "container"
    issues = _resources_issues(obj, path, container.get("resources"), f"container {name!r}")
    image = container.get("image")
    if is_ray_image(image):
        tag = split_image(image)[1]
        want = ray_version if version_matches(ray_version, pin) else pin.removesuffix("*")
        if not tag or not tag.startswith(str(want)):
            issues.append(Issue(obj, json_path((*path, "image")), f"image {image!r}: the tag must start with "
                                f"the Ray version {want} (ray=={pin} in pyproject.toml)"))
    for i, env in enumerate(_l(container.get("env"))):
        if isinstance(env, dict) and SECRET_ENV.search(str(env.get("name", ""))) and "value" in env:
            issues.append(Issue(obj, json_path((*path, "env", i, "value")), f"{env.get('name')} is a literal "
                                "value: secrets come from a Secret (valueFrom.secretKeyRef), never from manifests"))
    return issues


def _ray_cluster_issues(obj: str, prefix: tuple, cluster: dict, pin: str) -> list[Issue]:
    issues = []
    version = cluster.get("rayVersion")
    if not version_matches(version, pin):
        issues.append(Issue(obj, json_path((*prefix, "rayVersion")),
                            f"{version!r} does not match ray=={pin} in pyproject.toml"))
    auth = _d(cluster.get("authOptions"))
    if auth.get("mode") != "token" or not auth.get("secretName"):
        issues.append(Issue(obj, json_path((*prefix, "authOptions")), "Ray token auth must be on: "
                            "authOptions {mode: token, secretName: <Secret with key auth_token>}"))
    if cluster.get("enableInTreeAutoscaling"):
        issues += _resources_issues(obj, (*prefix, "autoscalerOptions"),
                                    _d(cluster.get("autoscalerOptions")).get("resources"), "the autoscaler")
    head = _d(cluster.get("headGroupSpec"))
    if head.get("serviceType", "ClusterIP") != "ClusterIP":
        issues.append(Issue(obj, json_path((*prefix, "headGroupSpec", "serviceType")),
                            f"{head.get('serviceType')!r} exposes the dashboard and Jobs API outside the "
                            "cluster: keep ClusterIP and use kubectl port-forward"))
    groups = [((*prefix, "headGroupSpec"), head)]
    groups += [((*prefix, "workerGroupSpecs", i), _d(g)) for i, g in enumerate(_l(cluster.get("workerGroupSpecs")))]
    for path, group in groups:
        for key, value in _d(group.get("rayStartParams")).items():
            if not isinstance(value, str):
                issues.append(Issue(obj, json_path((*path, "rayStartParams", key)),
                                    f"{value!r} is not of type 'string' (rayStartParams values are strings: quote it)"))
        if path[-2:-1] == ("workerGroupSpecs",):
            lo, hi = group.get("minReplicas"), group.get("maxReplicas")
            if lo is None or hi is None:
                issues.append(Issue(obj, json_path(path), "worker groups need minReplicas and maxReplicas "
                                    "(the autoscaler's bounds)"))
            elif isinstance(lo, int) and isinstance(hi, int) and lo > hi:
                issues.append(Issue(obj, json_path((*path, "minReplicas")), f"{lo} > maxReplicas {hi}"))
    return issues


def _ray_pod_issues(obj: str, path: tuple, pod: dict) -> list[Issue]:
    containers = _l(pod.get("containers"))
    first = _d(containers[0]) if containers else {}
    if containers and not is_ray_image(first.get("image")):
        return [Issue(obj, json_path((*path, "containers", 0)), f"the Ray container must be first "
                      f"(KubeRay configures containers[0]); found {first.get('name')!r} "
                      f"with image {first.get('image')!r}")]
    names = {_d(e).get("name") for e in _l(first.get("env"))}
    if containers and "MLFLOW_TRACKING_URI" not in names:
        return [Issue(obj, json_path((*path, "containers", 0, "env")),
                      "MLFLOW_TRACKING_URI is not set: jobs and Serve apps log to MLflow")]
    return []


def _repo_path(repo: Path, token: str) -> Path:
    """A path of the entrypoint in the checkout (relative, or under the image's /opt/ringbit)."""
    return repo / token.removeprefix(IMAGE_REPO_DIR + "/").lstrip("/")


def entrypoint_issues(obj: str, entrypoint: Any, repo: Path = REPO) -> list[Issue]:
    """A RayJob entrypoint must name a script and a --config that exist in the repository."""
    path = "spec.entrypoint"
    try:
        tokens = shlex.split(entrypoint) if isinstance(entrypoint, str) else []
    except ValueError as exc:
        return [Issue(obj, path, f"cannot parse: {exc}")]
    scripts = [t for t in tokens if t.endswith(".py")]
    configs = [tokens[i + 1] for i, t in enumerate(tokens[:-1]) if t in ("--config", "-c")]
    configs += [t.split("=", 1)[1] for t in tokens if t.startswith("--config=")]
    issues = []
    if not scripts:
        issues.append(Issue(obj, path, f"{entrypoint!r} names no Python script "
                            "(e.g. python jobs/pretrain.py --config jobs/configs/demo.yaml)"))
    if not configs:
        issues.append(Issue(obj, path, f"{entrypoint!r} names no --config"))
    for token in scripts + configs:
        if not _repo_path(repo, token).is_file():
            issues.append(Issue(obj, path, f"{token} does not exist in the repository"))
    return issues


def serve_config_issues(obj: str, doc: dict) -> list[Issue]:
    """serveConfigV2 must be serving/config.yaml as cluster_serve_config gives it (host 0.0.0.0, LM routes)."""
    spec = _d(doc.get("spec"))
    text = spec.get("serveConfigV2")
    if not isinstance(text, str):
        return [Issue(obj, "spec.serveConfigV2", "missing: run `ringbit k8s sync` (serving/config.yaml)")]
    try:
        actual = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return [Issue(obj, "spec.serveConfigV2", f"not valid YAML: {exc}")]
    expected = cluster_serve_config()
    if actual != expected:
        apps = {a.get("name") for a in _l(_d(actual).get("applications")) if isinstance(a, dict)}
        want = {a.get("name") for a in _l(expected.get("applications")) if isinstance(a, dict)}
        detail = f" (applications {sorted(apps, key=str)}, the file has {sorted(want, key=str)})" if apps != want else ""
        return [Issue(obj, "spec.serveConfigV2", "differs from serving/config.yaml (with http_options.host "
                      f"0.0.0.0 and the llm_route of each llm_app){detail}: run `ringbit k8s sync`")]
    issues = []
    port = _d(expected.get("http_options")).get("port", 8000)
    for prefix, cluster in ray_cluster_specs(doc):
        containers = _l(_d(_d(_d(cluster.get("headGroupSpec")).get("template")).get("spec")).get("containers"))
        ports = {_d(p).get("name"): _d(p).get("containerPort") for p in _l(_d(containers[0] if containers else {}).get("ports"))}
        if ports.get("serve", port) != port:
            issues.append(Issue(obj, json_path((*prefix, "headGroupSpec", "template", "spec", "containers", 0, "ports")),
                                f"the serve port is {ports['serve']}, the serve config's http_options.port {port}"))
    return issues


def project_issues(doc: dict, pin: str, repo: Path = REPO) -> list[Issue]:
    """The project's rules for one object (schemas checked elsewhere)."""
    obj, kind, spec = object_ref(doc), doc.get("kind"), _d(doc.get("spec"))
    issues: list[Issue] = []
    ray_versions = {}
    for prefix, cluster in ray_cluster_specs(doc):
        issues += _ray_cluster_issues(obj, prefix, cluster, pin)
        ray_versions[prefix] = cluster.get("rayVersion")
    for path, pod, is_ray in pod_specs(doc):
        version = next((v for p, v in ray_versions.items() if path[: len(p)] == p), None)
        if is_ray:
            issues += _ray_pod_issues(obj, path, pod)
        for section in ("initContainers", "containers"):
            for i, container in enumerate(_l(pod.get(section))):
                issues += _container_issues(obj, (*path, section, i), _d(container), pin, version)
    if kind == "RayJob":
        issues += entrypoint_issues(obj, spec.get("entrypoint"), repo)
        if spec.get("ttlSecondsAfterFinished") and not spec.get("shutdownAfterJobFinishes"):
            issues.append(Issue(obj, "spec.ttlSecondsAfterFinished", "has no effect without "
                                "shutdownAfterJobFinishes: true"))
        if "runtimeEnvYAML" in spec:
            try:
                if not isinstance(yaml.safe_load(str(spec["runtimeEnvYAML"])), dict):
                    issues.append(Issue(obj, "spec.runtimeEnvYAML", "must be a YAML mapping (in a string)"))
            except yaml.YAMLError as exc:
                issues.append(Issue(obj, "spec.runtimeEnvYAML", f"not valid YAML: {exc}"))
    elif kind == "RayService":
        issues += serve_config_issues(obj, doc)
    elif kind == "Service" and spec.get("type", "ClusterIP") != "ClusterIP":
        issues.append(Issue(obj, "spec.type", f"{spec.get('type')!r} exposes the Service outside the cluster: "
                            "keep ClusterIP and use kubectl port-forward (or an Ingress you secure)"))
    elif kind == "Secret" and (doc.get("data") or doc.get("stringData")):
        issues.append(Issue(obj, "data", "secret values do not belong in manifests: create the Secret with "
                            "`kubectl create secret` (README.md, section 'Kubernetes (KubeRay)')"))
    return issues


# ---------------------------------------------------------------------------------- objects


def validate_object(doc: dict, crds: Path | None, kubernetes_version: str, pin: str) -> list[Issue]:
    """Schema errors, then the project's rules (minus those at a path the schema already flagged)."""
    obj = object_ref(doc)
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return [Issue(obj, "", "apiVersion and kind are required")]
    issues: list[Issue] = []
    if api_version.split("/")[0] == RAY_GROUP:
        schemas = load_crd_schemas(str(crds or crd_directory()))
        schema = schemas.get((api_version, kind))
        if schema is None:
            known = ", ".join(sorted(f"{v} {k}" for v, k in schemas))
            issues.append(Issue(obj, "", f"no CRD for {api_version} {kind} (known: {known})"))
        else:
            import jsonschema

            issues += schema_issues(jsonschema.Draft202012Validator(schema), doc, obj)
            issues += schema_issues(_metadata_validator(kubernetes_version), doc.get("metadata", {}), obj, ("metadata",))
    else:
        validator = _core_validator(api_version, kind, kubernetes_version)
        if validator is None:
            issues.append(Issue(obj, "", f"no schema for {api_version} {kind} in Kubernetes {kubernetes_version}"))
        else:
            issues += schema_issues(validator, doc, obj)
    flagged = {i.path for i in issues}
    issues += [i for i in project_issues(doc, pin) if i.path not in flagged]
    return sorted(dict.fromkeys(issues), key=lambda i: i.path)


def validate_documents(docs: list[dict], source: str, crds: Path | None = None,
                       kubernetes_version: str = DEFAULT_KUBERNETES_VERSION) -> list[ObjectReport]:
    """One report per object, in order."""
    pin = ray_pin()
    if any(str(d.get("apiVersion", "")).split("/")[0] == RAY_GROUP for d in docs):
        load_crd_schemas(str(crds or crd_directory()))  # a missing CRD directory is one error, up front
    reports = []
    for doc in docs:
        meta = _d(doc.get("metadata"))
        reports.append(ObjectReport(source, str(doc.get("kind") or "?"), str(meta.get("name") or "?"),
                                    validate_object(doc, crds, kubernetes_version, pin)))
    return reports


def validate_overlay(overlay: str, crds: Path | None = None,
                     kubernetes_version: str = DEFAULT_KUBERNETES_VERSION) -> list[ObjectReport]:
    """What `kubectl apply -k manifests/overlays/<overlay>` would apply (no serve-config
    injection: a stale serveConfigV2 patch is an error)."""
    from ringbit.k8s.render import render

    return validate_documents(render(overlay, inject=False), overlay, crds, kubernetes_version)


def validate_file(path: str, crds: Path | None = None,
                  kubernetes_version: str = DEFAULT_KUBERNETES_VERSION) -> list[ObjectReport]:
    """A rendered YAML file ('-' = stdin)."""
    import sys

    if path == "-":
        text, source = sys.stdin.read(), "<stdin>"
    else:
        try:
            text, source = Path(path).read_text(), path
        except OSError as exc:
            raise K8sError(f"--file {path}: {exc.strerror or exc}") from None
    return validate_documents(load_documents(text, source), source, crds, kubernetes_version)
