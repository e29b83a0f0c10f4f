"""`ringbit models import / list`: pretrained models in the platform's MLflow registry."""

from __future__ import annotations

import json
from typing import Annotated, Any, Callable, Optional

import typer

from ringbit.console import fail
from ringbit.models.catalog import CATALOG as _MODEL_CATALOG  # standard library only

_CATALOG_HELP = "; ".join(f"{n} ({e.license}, from {e.upstream})" for n, e in _MODEL_CATALOG.items())
models_app = typer.Typer(
    help="Pretrained models in the platform's MLflow registry: import (catalog name, GGUF file or Hugging "
         f"Face folder) and list. Catalog: {_CATALOG_HELP}.",
    no_args_is_help=True,
)

def _registry_call(fn: Callable[[], Any]) -> Any:
    """Run a registry operation; user errors exit 2, an unreachable MLflow exits 1."""
    from ringbit.registry import RegistryUnavailable

    try:
        return fn()
    except RegistryUnavailable as exc:
        raise fail(str(exc), 1) from None
    except ValueError as exc:  # the classes are imported here: ringbit.models brings torch
        from ringbit.models.catalog import CatalogError
        from ringbit.models.convert import ModelImportError
        from ringbit.registry import NameClash

        if isinstance(exc, (CatalogError, ModelImportError, NameClash)):
            raise fail(str(exc), 2) from None
        raise
    except Exception as exc:
        from mlflow.exceptions import MlflowException

        if isinstance(exc, MlflowException):
            raise fail(f"MLflow: {exc.message}; is the platform up? run `ringbit up`", 1) from None
        raise


@models_app.command("import")
def models_import(
    source: Annotated[str, typer.Argument(help=f"A catalog name ({', '.join(_MODEL_CATALOG)}), a Llama-architecture .gguf file, or a Hugging Face folder (config.json, *.safetensors, tokenizer.json).", show_default=False)],
    name: Annotated[Optional[str], typer.Option(help="Registered model name (default: the catalog name, or a slug of the file/folder name).")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="If NAME exists: add a new version and move @base to it.")] = False,
    mlflow_uri: Annotated[Optional[str], typer.Option(help="MLflow URI (default: $MLFLOW_TRACKING_URI or the local platform's).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON (progress goes to stderr).")] = False,
) -> None:
    """Import a pretrained model and register it as models:/NAME@base.

    Converts SOURCE into a ringbit model folder, checks that it loads and runs, and only then logs
    it to MLflow (experiment ringbit-models; license, source sha256, parameters and context as
    tags). Use it wherever a model is taken, e.g. eval-ppl --model models:/NAME@base or
    serve up --model lm=models:/NAME@base."""
    from ringbit.registry import import_model

    def log(msg: str) -> None:
        typer.echo(msg, err=as_json)

    result = _registry_call(lambda: import_model(source, name=name, tracking_uri=mlflow_uri, replace=replace,
                                                 log=log))
    if as_json:
        typer.echo(json.dumps(result))


@models_app.command("list")
def models_list(
    mlflow_uri: Annotated[Optional[str], typer.Option(help="MLflow URI (default: $MLFLOW_TRACKING_URI or the local platform's).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
) -> None:
    """Registered model versions: name, version, aliases, parameters, context, source, license."""
    from ringbit.registry import human_count, list_models

    rows = _registry_call(lambda: list_models(mlflow_uri))
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        typer.echo("no registered models; import one with: ringbit models import "
                   f"{next(iter(_MODEL_CATALOG), 'SOURCE')}")
        return
    header = ("NAME", "VERSION", "ALIASES", "PARAMETERS", "CONTEXT", "LICENSE", "SOURCE")
    table = [header] + [
        (r["name"], str(r["version"]), ",".join("@" + a for a in r["aliases"]) or "-", human_count(r["parameters"]),
         str(r["context"] or "-"), r["license"], r["source"]) for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
