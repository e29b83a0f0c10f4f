"""`ringbit k8s`: render and validate the Kubernetes manifests offline, sync the serve config.

Exit codes: 0 valid, 1 validation errors (each printed with object and JSON path) or a tool that
failed, 2 usage errors (unknown overlay, unreadable file, no CRDs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ringbit.console import fail

from ringbit.k8s import DEFAULT_KUBERNETES_VERSION

k8s_app = typer.Typer(
    help="Kubernetes (KubeRay) manifests: render, validate offline, sync the serve config.",
    no_args_is_help=True,
)

CrdsOpt = Annotated[
    Optional[Path],
    typer.Option("--crds", envvar="RINGBIT_KUBERAY_CRDS",
                 help="Directory of KubeRay CRD YAMLs (default ../shared/kuberay-crds next to the repository)."),
]


def _fail(message: str, code: int) -> typer.Exit:
    return fail(message, code)


@k8s_app.command("render")
def render_cmd(
    overlay: Annotated[str, typer.Option(help="cpu, gpu, or a kustomization directory.")] = "cpu",
    only: Annotated[Optional[list[str]], typer.Option("--only", help="Print only KIND/NAME, repeatable (e.g. RayJob/ringbit-pretrain).")] = None,
) -> None:
    """Print the overlay's manifests (kustomize), with the current serving/config.yaml.

    Apply with: ringbit k8s render --overlay cpu | kubectl apply -f -"""
    from ringbit.k8s import render as r

    try:
        docs = r.render(overlay)
        if only:
            docs = r.select(docs, only)
        stale = r.sync_serve_config(check=True)
    except r.K8sError as exc:
        raise _fail(str(exc), exc.code) from None
    typer.echo(r.dump_documents(docs), nl=False)
    if stale:
        typer.secho("warning: manifests/base/serve-config.yaml is older than serving/config.yaml "
                    "(`kubectl apply -k` would deploy the old one): run `ringbit k8s sync`", fg="yellow", err=True)


@k8s_app.command("validate")
def validate_cmd(
    overlay: Annotated[Optional[str], typer.Option(help="cpu, gpu, all, or a kustomization directory (default: all).")] = None,
    file: Annotated[Optional[str], typer.Option("--file", "-f", help="Validate this rendered YAML instead ('-' = stdin).")] = None,
    crds: CrdsOpt = None,
    kubernetes_version: Annotated[str, typer.Option(help="Kubernetes version of the core schemas.")] = DEFAULT_KUBERNETES_VERSION,
) -> None:
    """Validate offline; exit 1 on any error, each printed with its object and JSON path.

    Core kinds: kubernetes-validate, strict. ray.io kinds: the KubeRay CRDs, unknown fields
    rejected. Then the project's rules (Ray pin, entrypoints, serve config, security defaults)."""
    from ringbit.k8s import render as r
    from ringbit.k8s import validate as v

    if file and overlay:
        raise _fail("give --overlay or --file, not both", 2)
    try:
        if file:
            reports = v.validate_file(file, crds, kubernetes_version)
        else:
            overlays = list(r.OVERLAYS) if overlay in (None, "all") else [overlay]
            reports = [rep for o in overlays for rep in v.validate_overlay(o, crds, kubernetes_version)]
    except r.K8sError as exc:
        raise _fail(str(exc), exc.code) from None
    _print_reports(reports)
    if any(not rep.ok for rep in reports):
        raise typer.Exit(1)


def _print_reports(reports) -> None:
    """A table (source, kind, name, result), then every error on its own line."""
    from rich.console import Console
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False)
    for column in ("source", "kind", "name", "result"):
        table.add_column(column)
    for rep in reports:
        result = "[green]ok[/green]" if rep.ok else f"[red]{len(rep.issues)} error{'s' * (len(rep.issues) > 1)}[/red]"
        table.add_row(rep.source, rep.kind, rep.name, result)
    Console(width=120).print(table)
    issues = [i for rep in reports for i in rep.issues]
    for issue in issues:
        typer.echo(f"{issue}")
    bad = sum(not rep.ok for rep in reports)
    typer.echo(f"{len(reports)} objects, {bad} with errors ({len(issues)} errors)" if bad else f"{len(reports)} objects valid")


@k8s_app.command("sync")
def sync_cmd(
    check: Annotated[bool, typer.Option("--check", help="Only report (exit 1) if the patch is stale.")] = False,
) -> None:
    """Write the RayService's serveConfigV2 (manifests/base/serve-config.yaml) from serving/config.yaml."""
    from ringbit.k8s import render as r

    try:
        changed = r.sync_serve_config(check=check)
    except r.K8sError as exc:
        raise _fail(str(exc), exc.code) from None
    where = r.SERVE_PATCH.relative_to(r.REPO)
    if check and changed:
        raise _fail(f"{where} is stale: run `ringbit k8s sync`", 1)
    typer.echo(f"{where}: {'updated' if changed else 'up to date'}")
