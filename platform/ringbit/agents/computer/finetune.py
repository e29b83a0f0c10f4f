"""Fine-tuning the computer-control agent on demonstrations (FireAct's recipe, arXiv 2310.05915,
on the agent of arXiv 2310.08740): the scripted solvers' answers to the agent's own planning and
reflection prompts (demos.py) through the shared SFT job (prompt tokens masked, Ray Train +
DeepSpeed, val_ppl on held-out episodes in MLflow, the model registered)."""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path
from typing import Any

from ringbit.agents.computer.config import ComputerFinetuneConfig, demos_is_file
from ringbit.agents.computer.demos import check_example
from ringbit.config import ConfigError
from ringbit.train.sft import Pairs, run_sft


def demos_uri(ref: str, experiment: str, tracking_uri: str | None = None) -> str:
    """runs:/RUN_ID/demos.jsonl for a run name (its latest finished run in `experiment`); a file
    or a runs:/ URI as given. ConfigError when no finished run has that name."""
    if ref.startswith("runs:/") or demos_is_file(ref):
        return ref
    from mlflow.tracking import MlflowClient

    from ringbit.agents.computer_demos import DEMOS_ARTIFACT
    from ringbit.tracking import resolve_tracking_uri

    client = MlflowClient(resolve_tracking_uri(tracking_uri))
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], f"attributes.run_name = '{ref}' and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=1) if exp else []
    if not runs:
        raise ConfigError(f"data.demos: no finished run named {ref!r} in experiment {experiment!r}; record "
                         f"demonstrations first: ringbit agents demos computer --name {ref}")
    return f"runs:/{runs[0].info.run_id}/{DEMOS_ARTIFACT}"


def read_demos(ref: str, tracking_uri: str | None = None) -> list[dict[str, Any]]:
    """The examples of a demos.jsonl file or runs:/RUN_ID/demos.jsonl; ConfigError naming the line
    of an example the agent could not parse."""
    if ref.startswith("runs:/"):
        import mlflow

        from ringbit.tracking import resolve_tracking_uri

        mlflow.set_tracking_uri(resolve_tracking_uri(tracking_uri))
        with tempfile.TemporaryDirectory() as tmp:
            text = Path(mlflow.artifacts.download_artifacts(ref, dst_path=tmp)).read_text()
    else:
        text = Path(ref).read_text()
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:  # json.JSONDecodeError is a ValueError
            row = json.loads(line)
            check_example(row)
        except (ValueError, KeyError) as exc:
            raise ConfigError(f"data.demos: {ref} line {n}: {exc}") from None
        rows.append(row)
    return rows


def split_demos(rows: list[dict[str, Any]], val_fraction: float, seed: int
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, val) by whole episodes (task, seed): no held-out screen was trained on."""
    episodes = sorted({(r["task"], r["seed"]) for r in rows})
    random.Random(seed).shuffle(episodes)
    n_val = max(1, round(len(episodes) * val_fraction))
    if n_val >= len(episodes):
        raise ValueError(f"{len(episodes)} demonstration episode(s): too few to hold {val_fraction:.0%} out; "
                         "record more seeds")
    held = set(episodes[:n_val])
    return ([r for r in rows if (r["task"], r["seed"]) not in held],
            [r for r in rows if (r["task"], r["seed"]) in held])


def computer_pairs(cfg: ComputerFinetuneConfig) -> tuple[Pairs, Pairs]:
    rows = [r for r in read_demos(cfg.data.demos, cfg.mlflow.tracking_uri) if r["kind"] in cfg.data.kinds]
    if not rows:
        raise ConfigError(f"data.demos: {cfg.data.demos} has no {' or '.join(cfg.data.kinds)} examples")
    train, val = split_demos(rows, cfg.data.val_fraction, cfg.data.seed)
    return [(r["prompt"], r["completion"]) for r in train], [(r["prompt"], r["completion"]) for r in val]


def run_computer_finetune(cfg: ComputerFinetuneConfig, log=print) -> dict[str, Any]:
    # A run name becomes its run's URI now, so the data cache keys on the run, not the name.
    uri = demos_uri(cfg.data.demos, cfg.data.demos_experiment, cfg.mlflow.tracking_uri)
    if uri != cfg.data.demos:
        log(f"[ringbit] demonstrations: {cfg.data.demos} = {uri}")
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"demos": uri})})
    return run_sft(cfg, "computer", lambda: computer_pairs(cfg),
                   "act as the computer-control agent on MiniWoB++", log=log)
