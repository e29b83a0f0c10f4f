"""`ringbit export-bitnet`: pack a trained BitNet model (and register the packed one)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ringbit.console import fail


def export_bitnet(
    model: Annotated[str, typer.Option(help="BitNet model: folder, MLflow run id, runs:/… or models:/name@alias.")],
    out: Annotated[Path, typer.Option(help="Folder to write the packed model to.")],
    ternary_format: Annotated[str, typer.Option(help="Ternary/2-bit packing: i2 (2-bit codes, 4 per byte) or t3 (base 3, 5 per byte).")] = "i2",
    high_precision: Annotated[str, typer.Option(help="dtype kept for embeddings, norms and LM head: float32 or bfloat16.")] = "float32",
    register: Annotated[Optional[str], typer.Option(help="Register the packed model under this name (default for models:/NAME@…: NAME-packed; none for a folder).")] = None,
    alias: Annotated[str, typer.Option(help="Registry alias to point at the packed version.")] = "current",
    mlflow_uri: Annotated[Optional[str], typer.Option(help="MLflow URI (registry source and target).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the size report as JSON.")] = False,
) -> None:
    """Pack a trained BitNet model (1-bit: 8 weights per byte; ternary: 4 or 5 per byte) into
    safetensors that PackedBitLinear runs directly; eval-ppl and generation load it as any model."""
    from ringbit.quant.packing import TERNARY_FORMATS
    from ringbit.registry import ExportSourceError, export_bitnet as export

    if ternary_format not in TERNARY_FORMATS:
        raise fail(f"--ternary-format {ternary_format!r}: choose one of {', '.join(TERNARY_FORMATS)}", 2)
    if high_precision not in ("float32", "bfloat16"):
        raise fail(f"--high-precision {high_precision!r}: choose float32 or bfloat16", 2)
    if alias == "latest":
        raise fail("--alias latest is reserved by MLflow; pick another name", 2)
    if out.exists() and any(out.iterdir()):
        raise fail(f"--out {out} exists and is not empty; choose a new folder", 2)
    try:
        report = export(model, out, ternary_format, high_precision, register, alias, mlflow_uri)
    except ExportSourceError as exc:
        raise fail(f"--model {model}: {exc}", 2) from None
    if as_json:
        typer.echo(json.dumps(report))
        return
    mb = 1 / 2**20
    typer.echo(f"packed {report['weight_bits']:g}-bit weights as {report['format']} into {out}")
    typer.echo(f"  projections: {report['linear_packed_bytes'] * mb:.2f} MiB packed vs "
               f"{report['linear_bf16_bytes'] * mb:.2f} MiB bf16 ({report['linear_ratio']:.1f}x smaller)")
    typer.echo(f"  whole model: {report['checkpoint_packed_bytes'] * mb:.2f} MiB vs "
               f"{report['checkpoint_bf16_bytes'] * mb:.2f} MiB bf16 ({report['checkpoint_ratio']:.2f}x; "
               f"embeddings and LM head kept in {high_precision})")
    if report.get("registered"):
        typer.echo(f"  registered as {report['registered']}")
