"""Pretrained models into the platform's MLflow registry: `ringbit models import` / `models list`.

An import resolves SOURCE (a catalog name, a .gguf file, a Hugging Face folder), converts it into
a ringbit model folder, loads that folder back and runs a 1-token forward, and only then creates
an MLflow run (experiment `ringbit-models`) and registers the folder under NAME with alias
`base`. Every check that can fail on the user's input runs before anything is written to MLflow;
a registration that fails half-way is rolled back (versions it created deleted, the run FAILED,
@base back where it was), so the registry never holds a half-written model.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import hashlib
import os
import re
import resource
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from ringbit.models.catalog import CatalogEntry

# Heavy modules (torch, mlflow, anything under ringbit.models) are imported where they are used:
# `ringbit models list` should not pay for torch.

EXPERIMENT = "ringbit-models"
ALIAS = "base"
HASH_CHUNK = 8 << 20


class RegistryUnavailable(RuntimeError):
    """The MLflow server does not answer."""


class NameClash(ValueError):
    """NAME is already registered and --replace was not given."""


# ----------------------------------------------------------------------------------- helpers


def sha256_source(path: Path) -> str:
    """sha256 of a file, read in chunks; for a folder, of its files' names and digests (sorted)."""

    def file_digest(f: Path) -> str:
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            while chunk := fh.read(HASH_CHUNK):
                h.update(chunk)
        return h.hexdigest()

    if path.is_file():
        return file_digest(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path).as_posix()}\0{file_digest(f)}\n".encode())
    return h.hexdigest()


def peak_rss_mb() -> float:
    """Peak resident set size of this process's own memory so far: VmHWM. Not ru_maxrss: Linux
    carries the parent's peak into a child across fork + exec, so a command run from a 2.2 GB
    pytest process reported 2.2 GB whatever it used itself."""
    try:
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024
    except (OSError, AttributeError):  # not Linux: the best there is
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def release_freed_memory() -> None:
    """Collect, then ask glibc to hand freed heap pages back to the OS: without it the freed
    conversion copy (0.5 GB) stays resident under the load-back check and the peak varies by
    allocator history (1.4-2.2 GB measured)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def check_reachable(tracking_uri: str, timeout: float = 5.0) -> None:
    """Fail fast when the MLflow server is down (the client would retry for minutes)."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    try:
        urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health", timeout=timeout).read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RegistryUnavailable(f"MLflow at {tracking_uri} does not answer ({reason}); is the platform "
                                  "up? run `ringbit up`") from None


def _registered(client, name: str):
    found = client.search_registered_models(filter_string=f"name = '{name}'")
    return next((m for m in found if m.name == name), None)


def _alias_version(client, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias).version
    except MlflowException:
        return None


def _versions(client, name: str) -> list:
    return list(client.search_model_versions(f"name = '{name}'"))


def human_count(n: int | None) -> str:
    if n is None:
        return "-"
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)


# ------------------------------------------------------------------------------------ import


def import_model(
    source: str,
    name: str | None = None,
    tracking_uri: str | None = None,
    replace: bool = False,
    log: Callable[[str], Any] = print,
    catalog: dict[str, CatalogEntry] | None = None,
) -> dict[str, Any]:
    """Import SOURCE and register it as `models:/NAME@base`; returns what was registered.

    Raises CatalogError / ModelImportError / NameClash for bad input (nothing registered),
    RegistryUnavailable when MLflow does not answer.
    """
    from ringbit import tracking
    from ringbit.models.catalog import check_name, resolve

    start = time.perf_counter()
    path, default_name, extra = resolve(source, catalog)
    name = check_name(name or default_name)
    uri = tracking.resolve_tracking_uri(tracking_uri)
    check_reachable(uri)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    existing = _registered(client, name)
    previous_base: str | None = None
    if existing is not None:
        latest = max((int(v.version) for v in _versions(client, name)), default=0)
        previous_base = _alias_version(client, name, ALIAS)
        if not replace:
            where = f"version {latest}" + (f", @{ALIAS} = version {previous_base}" if previous_base else "")
            raise NameClash(f"model {name!r} is already registered ({where}); pass --name OTHER, or --replace "
                            f"to add a new version and move @{ALIAS}")

    import torch

    from ringbit.models import count_parameters
    from ringbit.models.convert import ModelImportError, read_source, write_imported
    from ringbit.models.io import load_model_dir

    size_mb = sum(f.stat().st_size for f in ([path] if path.is_file() else path.rglob("*")) if f.is_file()) / 2**20
    kind = "GGUF file" if path.is_file() else "Hugging Face folder"
    log(f"reading {kind} {path} ({size_mb:.1f} MiB){', dequantizing' if path.is_file() else ''} …")
    t0 = time.perf_counter()
    imported = read_source(path)
    cfg = imported.config
    log(f"  {len(imported.state_dict)} tensors, {cfg.n_layers} layers, d_model {cfg.d_model}, "
        f"vocab {cfg.vocab_size}, context {cfg.max_seq_len} ({time.perf_counter() - t0:.1f} s)")
    digest = sha256_source(path)
    provenance = {**imported.provenance, **extra, "source.sha256": digest, "source.path": str(path)}

    with tempfile.TemporaryDirectory(prefix="ringbit-import-") as tmp:
        folder = Path(tmp) / "model"
        log("writing the ringbit model folder …")
        t0 = time.perf_counter()
        write_imported(imported, folder)
        imported.state_dict.clear()  # the folder has the weights now: keep one copy in memory at a time
        tokenizer_config = imported.tokenizer_config
        del imported
        release_freed_memory()
        log(f"  {sum(f.stat().st_size for f in folder.iterdir()) / 2**20:.1f} MiB "
            f"({time.perf_counter() - t0:.1f} s)")

        log("checking: loading the folder back and running a 1-token forward …")
        t0 = time.perf_counter()
        try:
            model, tokenizer = load_model_dir(folder)
            n_params = count_parameters(model)
            first = tokenizer.token_to_id(tokenizer_config.get("bos_token") or "") or 0
            with torch.no_grad():
                logits = model(torch.tensor([[first]]))
        except Exception as exc:  # nothing is registered yet: report it as a bad source
            raise ModelImportError(f"{path}: the converted model folder does not load and run "
                                   f"({type(exc).__name__}: {exc})") from None
        if tuple(logits.shape) != (1, 1, cfg.vocab_size) or not torch.isfinite(logits).all():
            raise ModelImportError(f"{path}: the converted model's forward pass gives "
                                   f"{'non-finite logits' if logits.shape[-1] == cfg.vocab_size else tuple(logits.shape)}; "
                                   "the weights are damaged or not what the metadata describes")
        del model, logits
        gc.collect()
        log(f"  ok: {n_params:,} parameters ({time.perf_counter() - t0:.1f} s)")

        version_tags = {
            "source": extra.get("catalog.name") or str(path), "format": provenance.get("source.format", ""),
            "license": provenance.get("license", "unknown"), "n_params": str(n_params),
            "context": str(cfg.max_seq_len), "sha256": digest,
        }
        if extra.get("source.upstream"):
            version_tags["upstream"] = extra["source.upstream"]

        log(f"registering in MLflow ({uri}, experiment {EXPERIMENT}) as {name} …")
        t0 = time.perf_counter()
        version = _register(client, uri, folder, name, cfg, provenance, n_params, version_tags,
                            created_model=existing is None, previous_base=previous_base, source=source)

    seconds = time.perf_counter() - start
    result = {
        "name": name, "version": int(version.version), "alias": ALIAS, "uri": f"models:/{name}@{ALIAS}",
        "run_id": version.run_id, "parameters": n_params, "context": cfg.max_seq_len,
        "source": version_tags["source"], "format": version_tags["format"], "license": version_tags["license"],
        "sha256": digest, "seconds": round(seconds, 1), "peak_rss_mb": round(peak_rss_mb()),
    }
    log(f"  version {version.version} ({time.perf_counter() - t0:.1f} s)")
    moved = f" (@{ALIAS} moved from version {previous_base})" if previous_base else ""
    log(f"registered {result['uri']} = version {version.version}{moved}: {human_count(n_params)} parameters, "
        f"context {cfg.max_seq_len}, license {version_tags['license']} in {seconds:.1f} s "
        f"(peak RSS {result['peak_rss_mb']} MB)")
    return result


def _register(client, uri: str, folder: Path, name: str, cfg, provenance: dict[str, str], n_params: int,
              version_tags: dict[str, str], created_model: bool, previous_base: str | None, source: str):
    """Run + model version + tags, all or nothing."""
    import socket

    from ringbit import tracking
    from ringbit.config import flatten

    with _quiet_mlflow():
        run = client.create_run(tracking.experiment_id(client, EXPERIMENT), run_name=f"import-{name}",
                                tags={"ringbit.import_source": source, "ringbit.registered_model": name})
        run_id = run.info.run_id
        try:
            tracking.log_params(client, run_id, flatten({"model": cfg.model_dump(mode="json")}))
            tracking.set_tags(client, run_id, {**provenance, "ringbit.n_params": n_params,
                                               "git.commit": tracking.git_commit(), "host": socket.gethostname()})
            tracking.log_and_register_model(uri, run_id, folder, name, ALIAS)
            found = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
            if not found:
                raise RuntimeError(f"MLflow registered no version of {name!r} for run {run_id}")
            version = found[0]
            for key, value in version_tags.items():
                client.set_model_version_tag(name, version.version, key, value)
            client.set_terminated(run_id, "FINISHED")
            return client.get_model_version(name, version.version)
        except BaseException:
            _rollback(client, run_id, name, created_model, previous_base)
            raise


@contextlib.contextmanager
def _quiet_mlflow():
    """No run URLs on stdout (they would break --json), no artifact progress bars, no advice to
    add type hints to the pyfunc wrapper."""
    saved = {k: os.environ.get(k) for k in _QUIET}
    os.environ.update(_QUIET)
    show = warnings.showwarning

    def drop_type_hint_advice(message, *args, **kwargs):  # MLflow re-enables it with its own filter
        if "type hints to the `predict` method" not in str(message):
            show(message, *args, **kwargs)

    warnings.showwarning = drop_type_hint_advice
    try:
        yield
    finally:
        warnings.showwarning = show
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


_QUIET = {"MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


def _rollback(client, run_id: str, name: str, created_model: bool, previous_base: str | None) -> None:
    """Undo a half-done registration; best effort, each step on its own."""
    steps: list[tuple[str, Callable[[], Any]]] = []
    try:
        mine = [v.version for v in client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")]
    except Exception:
        mine = []
    for v in mine:
        steps.append((f"delete version {v}", lambda v=v: client.delete_model_version(name, v)))
    if previous_base:
        steps.append((f"restore @{ALIAS}", lambda: client.set_registered_model_alias(name, ALIAS, previous_base)))
    if created_model:
        steps.append(("delete the empty registered model",
                      lambda: not _versions(client, name) and client.delete_registered_model(name)))
    steps.append(("mark the run FAILED", lambda: client.set_terminated(run_id, "FAILED")))
    for what, step in steps:
        try:
            step()
        except Exception as exc:  # report and go on: the other steps still help
            print(f"warning: rollback could not {what}: {type(exc).__name__}: {exc}", file=sys.stderr)


# -------------------------------------------------------------------------------------- list


def list_models(tracking_uri: str | None = None) -> list[dict[str, Any]]:
    """One row per registered model version: name, version, aliases, parameters, context, source,
    license (imported models carry them as version tags; platform-trained ones from their run)."""
    from mlflow.tracking import MlflowClient

    from ringbit import tracking

    uri = tracking.resolve_tracking_uri(tracking_uri)
    check_reachable(uri)
    client = MlflowClient(uri)
    models, token = [], None
    while True:
        page = client.search_registered_models(max_results=100, page_token=token)
        models.extend(page)
        token = page.token
        if not token:
            break
    rows = []
    for rm in sorted(models, key=lambda m: m.name):
        aliases = dict(rm.aliases or {})  # alias -> version (search_model_versions leaves them out)
        for v in sorted(_versions(client, rm.name), key=lambda v: -int(v.version)):
            tags = dict(v.tags or {})
            params, context = tags.get("n_params"), tags.get("context")
            source, license_ = tags.get("source"), tags.get("license")
            if params is None and v.run_id:  # trained on the platform: the run has the config
                try:
                    run_params = client.get_run(v.run_id).data.params
                except Exception:
                    run_params = {}
                params, context = run_params.get("derived.n_params"), context or run_params.get("model.max_seq_len")
                source = source or f"run {v.run_id[:8]}"
            rows.append({
                "name": rm.name, "version": int(v.version), "aliases": sorted(a for a, ver in aliases.items() if str(ver) == str(v.version)),
                "parameters": int(params) if params else None, "context": int(context) if context else None,
                "source": source or "-", "license": license_ or "-", "format": tags.get("format") or "-",
                "run_id": v.run_id,
            })
    return rows


class ExportSourceError(ValueError):
    """The model to export could not be read (no such folder, run or registered model, not a
    BitNet model)."""


def export_bitnet(model: str, out: Path, ternary_format: str = "i2", high_precision: str = "float32",
                  register: str | None = None, alias: str = "current",
                  tracking_uri: str | None = None) -> dict[str, Any]:
    """Pack the BitNet model `model` (folder, run id, runs:/ or models:/ reference) into `out` and,
    if `register` names a model (default for models:/NAME@...: NAME-packed), log the packed folder
    in an MLflow run of experiment ringbit-export and register it under that name with `alias`.
    Returns quant.export's size report, plus `registered` when it registered one."""
    from mlflow.exceptions import MlflowException

    from ringbit import tracking
    from ringbit.quant.export import export_packed

    try:
        src = tracking.resolve_model_ref(model, tracking_uri)
        report = export_packed(src, out, ternary_format, high_precision)
    except (FileNotFoundError, ValueError, MlflowException) as exc:
        raise ExportSourceError(str(exc)) from None
    if register is None and model.startswith("models:/"):
        register = model.removeprefix("models:/").split("@")[0].split("/")[0] + "-packed"
    if register:
        from mlflow.tracking import MlflowClient

        uri = tracking.resolve_tracking_uri(tracking_uri)
        client = MlflowClient(uri)
        run = client.create_run(tracking.experiment_id(client, "ringbit-export"),
                                run_name=f"export-bitnet-{register}",
                                tags={"ringbit.source_model": model, **tracking.default_tags()})
        tracking.log_params(client, run.info.run_id, {"format": report["format"],
                                                      "weight_bits": report["weight_bits"],
                                                      "high_precision": high_precision,
                                                      "source": model})
        for key in ("linear_ratio", "checkpoint_ratio", "linear_packed_bytes", "checkpoint_packed_bytes"):
            client.log_metric(run.info.run_id, key, report[key])
        report["registered"] = tracking.log_and_register_model(uri, run.info.run_id, out, register, alias)
    return report
