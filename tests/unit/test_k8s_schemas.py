"""Kubernetes manifest machinery that needs no kubectl/kustomize: KubeRay CRD schemas are closed
(unknown fields rejected, open and preserved objects left alone) and the RayService serve-config
patch is built from serving/config.yaml, not a copy.

Moved from tests/integration/test_k8s.py (the rendered-overlay checks stay there)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from ringbit.k8s import render as r
from ringbit.k8s import validate as v

CRDS = Path(__file__).resolve().parents[3] / "shared" / "kuberay-crds"

needs_crds = pytest.mark.skipif(not CRDS.is_dir(), reason=f"KubeRay CRDs not found at {CRDS} (../shared/kuberay-crds)")


@needs_crds
def test_crd_schemas_are_closed():
    spec = v.load_crd_schemas(str(CRDS))[("ray.io/v1", "RayCluster")]["properties"]["spec"]
    assert spec["additionalProperties"] is False
    head = spec["properties"]["headGroupSpec"]
    assert head["additionalProperties"] is False
    assert head["properties"]["rayStartParams"]["additionalProperties"] == {"type": "string"}  # kept
    container = head["properties"]["template"]["properties"]["spec"]["properties"]["containers"]["items"]
    assert container["additionalProperties"] is False


def test_close_schema_leaves_open_and_preserved_objects_alone():
    schema = {"type": "object", "properties": {
        "a": {"type": "object", "properties": {"x": {"type": "string"}}},
        "b": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {"y": {}}},
        "c": {"type": "object", "additionalProperties": {"type": "string"}},
        "d": {"type": "array", "items": {"type": "object", "properties": {"z": {}}}},
        "e": {"anyOf": [{"type": "object", "properties": {"w": {}}}]},
    }}
    closed = v.close_schema(copy.deepcopy(schema))
    p = closed["properties"]
    assert closed["additionalProperties"] is False and p["a"]["additionalProperties"] is False
    assert "additionalProperties" not in p["b"]
    assert p["c"]["additionalProperties"] == {"type": "string"}
    assert p["d"]["items"]["additionalProperties"] is False
    assert p["e"]["anyOf"][0]["additionalProperties"] is False


def test_serve_config_comes_from_the_file_not_a_copy(tmp_path):
    config = yaml.safe_load((REPO / "serving" / "config.yaml").read_text())
    config["applications"].append({"name": "extra", "route_prefix": "/v1/extra", "import_path": "serving.x:app"})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    patch = yaml.safe_load(r.serve_patch_text(path))
    deployed = yaml.safe_load(patch["spec"]["serveConfigV2"])
    assert [a["name"] for a in deployed["applications"]][-1] == "extra"
    assert r.sync_serve_config(check=True, path=path) is True  # the committed patch is now stale
    no_http = tmp_path / "bare.yaml"
    no_http.write_text("applications: []\n")
    assert r.cluster_serve_config(no_http) == {"applications": [], "http_options": {"host": "0.0.0.0"}}
