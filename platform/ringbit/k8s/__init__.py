"""Kubernetes manifests (manifests/, KubeRay): render them with kustomize and validate them offline.

- ringbit.k8s.render: `kubectl kustomize` (or `kustomize build`) of an overlay, the RayService's
  serveConfigV2 from serving/config.yaml (`ringbit k8s sync`), YAML in and out;
- ringbit.k8s.validate: core kinds against kubernetes-validate's strict schemas, ray.io kinds against
  the KubeRay CRDs' closed schemas, and the project's own rules;
- ringbit.k8s.cli: the `ringbit k8s` commands.

Nothing here talks to a cluster or starts Ray.
"""

DEFAULT_KUBERNETES_VERSION = "1.32"  # core schemas (kubernetes-validate); the kubectl here is 1.32
