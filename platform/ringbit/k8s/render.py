"""Render the manifests with kustomize, and keep the RayService's serveConfigV2 equal to the
project's serve config.

serving/config.yaml is the one source of the Serve applications. Kustomize cannot put a file's
text into a string field of a custom resource, so `ringbit k8s sync` writes it into the kustomize
patch manifests/base/serve-config.yaml (for `kubectl apply -k`), `render` injects the current file
at render time, and `validate` reports a patch that has fallen behind. The one transformation:
http_options.host becomes 0.0.0.0 — the file binds 127.0.0.1 for the local platform, while in a
pod the Serve proxies must listen on the pod's address for KubeRay's serve Service to reach them.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterable

import yaml

REPO = Path(__file__).resolve().parents[3]
MANIFESTS = REPO / "manifests"
OVERLAYS = ("cpu", "gpu")
SERVE_CONFIG = REPO / "serving" / "config.yaml"
SERVE_PATCH = MANIFESTS / "base" / "serve-config.yaml"
SERVE_RAYSERVICE = "ringbit-serve"  # the RayService the patch targets
CLUSTER_HOST = "0.0.0.0"
KUSTOMIZE_TIMEOUT_S = 120

_INSTALL_HINT = (
    "install kubectl (it includes kustomize): https://kubernetes.io/docs/tasks/tools/ , or "
    "kustomize: https://kubectl.docs.kubernetes.io/installation/kustomize/"
)


class K8sError(RuntimeError):
    """A problem to fix before anything can be rendered or checked; `code` is the CLI exit code
    (2: usage or input, 1: a tool that is missing or failed)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------------- YAML


class _Dumper(yaml.SafeDumper):
    """Block style, multi-line strings as literal blocks (serveConfigV2, runtimeEnvYAML)."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)


def dump_documents(docs: Iterable[dict]) -> str:
    return "---\n".join(dump_yaml(doc) for doc in docs)


def load_documents(text: str, source: str) -> list[dict]:
    """Every object of a multi-document YAML stream (items of `kind: List` included)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        raw = [d for d in yaml.load_all(text, Loader=loader) if d is not None]
    except yaml.YAMLError as exc:
        raise K8sError(f"{source}: not valid YAML: {exc}") from None
    docs: list[dict] = []
    for i, doc in enumerate(raw):
        if not isinstance(doc, dict):
            raise K8sError(f"{source}: document {i + 1} is a {type(doc).__name__}, not a Kubernetes object")
        if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            docs.extend(item for item in doc["items"] if isinstance(item, dict))
        else:
            docs.append(doc)
    if not docs:
        raise K8sError(f"{source}: no Kubernetes objects found")
    return docs


def object_ref(doc: dict) -> str:
    """`Kind/name`, how objects are named in every message."""
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    return f"{doc.get('kind') or '?'}/{meta.get('name') or '?'}"


# ---------------------------------------------------------------------------------- kustomize


def overlay_dir(overlay: str) -> Path:
    """manifests/overlays/<name>, or any directory with a kustomization (your own overlay)."""
    if overlay in OVERLAYS:
        return MANIFESTS / "overlays" / overlay
    path = Path(overlay)
    if path.is_dir() and any((path / n).is_file() for n in ("kustomization.yaml", "kustomization.yml", "Kustomization")):
        return path
    raise K8sError(f"unknown overlay {overlay!r}: choose one of {', '.join(OVERLAYS)} "
                   "(or give a directory with a kustomization.yaml)")


def kustomize_command(directory: Path) -> list[str]:
    """`kubectl kustomize DIR` (kubectl bundles kustomize), else `kustomize build DIR`."""
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize", str(directory)]
    if shutil.which("kustomize"):
        return ["kustomize", "build", str(directory)]
    raise K8sError(f"neither kubectl nor kustomize is on PATH: {_INSTALL_HINT}", code=1)


def kustomize(directory: Path) -> str:
    """The rendered YAML of a kustomization directory (works offline: no API server)."""
    cmd = kustomize_command(directory)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=KUSTOMIZE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise K8sError(f"`{' '.join(cmd)}` did not finish in {KUSTOMIZE_TIMEOUT_S} s", code=1) from None
    if proc.returncode != 0:
        raise K8sError(f"`{' '.join(cmd)}` failed:\n{proc.stderr.strip()}", code=1)
    return proc.stdout


def render(overlay: str, inject: bool = True) -> list[dict]:
    """The overlay's objects; with inject, every RayService carries the current serve config
    (the same as the committed patch when that is in sync)."""
    directory = overlay_dir(overlay)
    docs = load_documents(kustomize(directory), str(directory))
    if inject:
        text = serve_config_v2()
        for doc in docs:
            if doc.get("kind") == "RayService" and isinstance(doc.get("spec"), dict):
                doc["spec"]["serveConfigV2"] = text
    return docs


def select(docs: list[dict], refs: list[str]) -> list[dict]:
    """The objects named KIND/NAME (e.g. RayJob/ringbit-pretrain), in the order rendered."""
    wanted = {r.lower() for r in refs}
    chosen = [d for d in docs if object_ref(d).lower() in wanted]
    missing = wanted - {object_ref(d).lower() for d in chosen}
    if missing:
        raise K8sError(f"--only {', '.join(sorted(missing))}: no such object; rendered: "
                       + ", ".join(object_ref(d) for d in docs))
    return chosen


# ---------------------------------------------------------------------------------- serve config


def cluster_serve_config(path: Path = SERVE_CONFIG) -> dict[str, Any]:
    """The serve config as the RayService deploys it: the file unchanged except
    http_options.host = 0.0.0.0 (see the module docstring) and, for each `llm_app` /
    `react_llm_app`, the route of that application (`llm_route` / `react_llm_route`)."""
    try:
        config = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise K8sError(f"serve config {path}: {exc}") from None
    if not isinstance(config, dict):
        raise K8sError(f"serve config {path}: expected a mapping (Ray Serve's config format)")
    config = copy.deepcopy(config)
    http = config.get("http_options")
    config["http_options"] = {**(http if isinstance(http, dict) else {}), "host": CLUSTER_HOST}
    routes = {a.get("name"): a.get("route_prefix", "/") for a in config.get("applications") or []
              if isinstance(a, dict)}
    for app in config.get("applications") or []:
        args = app.get("args") if isinstance(app, dict) else None
        for key in [k for k in (args or {}) if k == "llm_app" or k.endswith("_llm_app")]:
            # the RayService deploys the file as it is: the caller finds the LM app by its route
            if args[key] in routes:
                args.setdefault(key.removesuffix("app") + "route", routes[args[key]])
    return config


def serve_config_v2(path: Path = SERVE_CONFIG) -> str:
    """serveConfigV2 (a YAML string) for the RayService."""
    return dump_yaml(cluster_serve_config(path))


def serve_patch_text(path: Path = SERVE_CONFIG) -> str:
    """The whole of manifests/base/serve-config.yaml."""
    patch = {"apiVersion": "ray.io/v1", "kind": "RayService", "metadata": {"name": SERVE_RAYSERVICE},
             "spec": {"serveConfigV2": serve_config_v2(path)}}
    return ("# Generated by `ringbit k8s sync` from serving/config.yaml, with http_options.host set to\n"
            "# 0.0.0.0 (the Serve proxies must listen on the pod's address) and each llm_app's route\n"
            "# written beside it (llm_route). Do not edit: edit\n"
            "# serving/config.yaml and run `ringbit k8s sync`; `ringbit k8s validate` flags a stale copy.\n"
            + dump_yaml(patch))


def sync_serve_config(check: bool = False, path: Path = SERVE_CONFIG, patch: Path = SERVE_PATCH) -> bool:
    """Write the serveConfigV2 patch from the serve config; True if it was (check: would be) changed."""
    text = serve_patch_text(path)
    current = patch.read_text() if patch.is_file() else None
    if current == text:
        return False
    if not check:
        patch.write_text(text)
    return True
