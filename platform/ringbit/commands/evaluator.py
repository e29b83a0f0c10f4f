"""`ringbit evaluator synth / meta-eval` (InstructScore evaluator) and `ringbit eval-ppl`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ringbit.console import fail

evaluator_app = typer.Typer(help="InstructScore evaluator: synthetic training data, meta-evaluation.",
                            no_args_is_help=True)


@evaluator_app.command("synth")
def evaluator_synth(
    out: Annotated[Path, typer.Option(help="JSONL file to write.")],
    n: Annotated[int, typer.Option(help="Examples to write.")] = 1000,
    corpus: Annotated[str, typer.Option(help="builtin:python-docs, builtin:python-topics or a text file.")] = "builtin:python-docs",
    seed: Annotated[int, typer.Option(help="Random seed (deterministic output).")] = 0,
) -> None:
    """SEScore-style synthetic (reference, candidate, report, score) examples from a corpus:
    1-5 errors per sentence (insert / delete / replace / swap, and MQM-style negation, number,
    spelling, punctuation and grammar errors), each minor or major."""
    from ringbit.data.corpus import BUILTINS, builtin_documents
    from ringbit.evaluator.synthetic import make_examples, write_jsonl

    if corpus in BUILTINS:
        texts = builtin_documents(corpus)
    elif Path(corpus).is_file():
        texts = [Path(corpus).read_text(errors="replace")]
    else:
        raise fail(f"--corpus {corpus!r}: not a file nor one of {', '.join(BUILTINS)}", 2)
    if n < 1:
        raise fail("--n must be at least 1", 2)
    try:
        examples = make_examples(texts, n, seed=seed)
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    write_jsonl(examples, out)
    errors = sum(len(e.errors) for e in examples)
    typer.echo(f"wrote {len(examples)} examples ({errors} errors) to {out}")


@evaluator_app.command("meta-eval")
def evaluator_meta_eval(
    data: Annotated[Path, typer.Option(help="Gold segments: synthetic .jsonl or a human-score .tsv with a header naming reference, candidate and score (or mqm), optionally system, source, task (e.g. ../shared/wmt22-zhen-mqm/dev.tsv).")],
    evaluator_url: Annotated[str, typer.Option(help="The evaluator service, e.g. http://127.0.0.1:8000.")] = "http://127.0.0.1:8000",
    limit: Annotated[Optional[int], typer.Option(help="Use the first N segments.")] = None,
    sample: Annotated[Optional[int], typer.Option(help="Use N segments drawn at random (same --seed, same segments for every metric; drawn across the whole file, so every system of the WMT file is in it). For a quick figure on a slow evaluator.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of --sample.")] = 0,
    batch: Annotated[int, typer.Option(help="Items per request (at most the evaluator's max_items).")] = 8,
    experiment: Annotated[str, typer.Option(help="MLflow experiment.")] = "ringbit-evaluator",
    mlflow_uri: Annotated[Optional[str], typer.Option(help="MLflow URI (default: the local platform's).")] = None,
    metric: Annotated[str, typer.Option(help="What scores the segments: evaluator (the served InstructScore evaluator), or a string baseline computed here: bleu, chrf, ter (sentence-level, sacrebleu).")] = "evaluator",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Segment-level Kendall tau-b and Pearson between the evaluator's scores (or a string
    metric's) and gold scores, pooled and per system, logged to MLflow with a scatter plot and the
    predictions. A report that does not parse counts as the worst score."""
    from tqdm import tqdm

    from ringbit.evaluator.metaeval import STRING_METRICS, ScoringError, read_gold, run_meta_eval

    if metric not in ("evaluator", *STRING_METRICS):
        raise fail(f"--metric {metric!r}: choose evaluator, {', '.join(STRING_METRICS)}", 2)
    if sample is not None and sample < 2:
        raise fail(f"--sample {sample}: need at least 2 segments for a correlation", 2)
    try:
        segments = read_gold(data, limit, sample, seed)
    except ValueError as exc:
        raise fail(f"--data {data}: {exc}", 2) from None
    selection = {k: v for k, v in (("limit", limit), ("sample", sample)) if v is not None}
    if sample is not None:
        selection["seed"] = seed
    with tqdm(total=len(segments), unit="seg", desc=f"meta-eval {metric}", disable=as_json) as bar:
        try:
            result = run_meta_eval(segments, evaluator_url, data, batch, experiment, mlflow_uri, bar.update,
                                   metric=metric, selection=selection)
        except ScoringError as exc:
            raise fail(f"--evaluator-url {evaluator_url}: {exc}") from None
    if as_json:
        typer.echo(json.dumps(result))
        return
    rows = [("pooled", result)] + sorted(result.get("per_system", {}).items())
    typer.echo(f"{'segments':<24} {'n':>6} {'tau-b':>8} {'pearson':>8}")
    for name, row in rows:
        typer.echo(f"{name:<24} {row['n']:>6} {row['kendall_tau']:>8.4f} {row['pearson']:>8.4f}")
    typer.echo(f"{metric}: parsed {result['parse_rate']:.1%} (unparsed reports count as the worst score; "
               f"parsed only: tau {result['kendall_tau_parsed']:.4f}), {result['segments_per_s']:.1f} "
               f"segments/s; MLflow run {result['mlflow_run']}")
    if "span_precision" in result and not result["spans_injected"]:
        typer.echo("explanation agreement: no parsed report of a segment with injected errors to compare")
    elif "span_precision" in result:  # synthetic data: do the reported error locations match the injected?
        typer.echo(f"explanation agreement: {result['span_precision']:.1%} of {result['spans_reported']} reported "
                   f"error locations overlap an injected error; {result['span_recall']:.1%} of "
                   f"{result['spans_injected']} injected errors found")


def eval_ppl(
    model: Annotated[str, typer.Option(help="Model folder, MLflow run id, runs:/… or models:/name@alias.")],
    data: Annotated[str, typer.Option(help="Text file to score (or builtin:python-topics / builtin:python-docs).")],
    context: Annotated[Optional[int], typer.Option(help="Window length (default: the model's max_seq_len).")] = None,
    stride: Annotated[Optional[int], typer.Option(help="Window step (default: context // 2).")] = None,
    mlflow_uri: Annotated[Optional[str], typer.Option(help="MLflow URI for run/registry models.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Log-perplexity of a model on a text, with a sliding window for long texts."""
    from tqdm import tqdm

    from ringbit.eval_ppl import PerplexityInputError, eval_perplexity

    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="tok", desc="eval-ppl", disable=as_json)
        bar.update(done - bar.n)

    try:
        result = eval_perplexity(model, data, context, stride, mlflow_uri, progress)
    except PerplexityInputError as exc:
        raise fail(str(exc), 2) from None
    finally:
        if bar is not None:
            bar.close()
    typer.echo(json.dumps(result) if as_json else
               f"log-perplexity {result['log_ppl']:.4f}   perplexity {result['ppl']:.3f}   "
               f"({result['tokens']} tokens, context {result['context']}, stride {result['stride']})")
