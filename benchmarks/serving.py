"""Serving benchmark: throughput and p50/p99 latency of /v1/completions and /v1/evaluate at
concurrency 1, 8 and 32, with and without dynamic batching, in the same run.

    ringbit up && python benchmarks/serving.py [--seconds 10] [--port 8011]
    python benchmarks/serving.py --model models:/smollm2-instructscore@current --endpoints /v1/evaluate

Deploys, on the local platform's Ray, the same model twice behind the LM service — once with
@serve.batch up to --max-batch-size requests (16), once with batches of 1 — and an evaluator in
front of each. The default model is the demo's shape (1.4M parameters, random weights: speed, not
quality, is measured) with a 512-token context so InstructScore prompts fit; --model takes any
model reference the LM service takes (a registry model, a run, a folder), e.g. the fine-tuned
SmolLM2 evaluator, whose reports run to a few hundred tokens. Prints a table, writes
benchmarks/results/serving.json (or --out) and logs it to MLflow (experiment ringbit-benchmarks).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "platform"))
sys.path.insert(0, str(REPO))
os.environ.setdefault("RAY_AUTH_MODE", "token")

import requests  # noqa: E402

EVAL_ITEM = {"reference": "The for statement is used to iterate over the elements of a sequence.",
             "candidate": "The for statement iterate over elements of the sequence.", "task": "zh-en"}


def make_model(out: Path) -> Path:
    import torch

    from ringbit.models.config import ModelConfig
    from ringbit.data.corpus import builtin_documents
    from ringbit.data.tokenizer import train_tokenizer
    from ringbit.models import Transformer
    from ringbit.models.io import save_model_dir

    cfg = ModelConfig(vocab_size=4096, d_model=128, n_layers=4, n_heads=4, max_seq_len=512)
    torch.manual_seed(0)
    tok = train_tokenizer(builtin_documents("builtin:python-topics"), cfg.vocab_size)
    return save_model_dir(out, cfg, Transformer(cfg).state_dict(), tok.to_str())


def deploy(model: str, port: int, max_batch_size: int, eval_args: dict) -> str:
    from ringbit import serving

    apps = []
    for mode, batch in (("batched", max_batch_size), ("unbatched", 1)):
        apps.append({"name": f"bench-lm-{mode}", "route_prefix": f"/{mode}", "import_path": "serving.lm:app",
                     "args": {"model": model, "max_batch_size": batch, "batch_wait_timeout_s": 0.02,
                              "max_ongoing_requests": 64, "ray_actor_options": {"num_cpus": 0.5}}})
        apps.append({"name": f"bench-eval-{mode}", "route_prefix": f"/{mode}-eval",
                     "import_path": "serving.evaluator:app",
                     "args": {"llm_app": f"bench-lm-{mode}", **eval_args}})
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        json.dump({"http_options": {"host": "127.0.0.1", "port": port}, "applications": apps}, f)
    config = serving.load_serve_config(Path(f.name), port=port)
    outcome = serving.deploy(config, log=print)
    if any(v != "RUNNING" for v in outcome.values()):
        raise SystemExit(f"deployment failed: {outcome}")
    return f"http://127.0.0.1:{port}"


def load(url: str, body: dict, concurrency: int, seconds: float) -> dict:
    """`concurrency` clients sending back to back for `seconds`; latency of every request."""
    latencies: list[float] = []
    errors = [0]
    stop = time.perf_counter() + seconds
    lock = threading.Lock()

    def client():
        session = requests.Session()
        while time.perf_counter() < stop:
            t = time.perf_counter()
            try:  # a real model's report takes tens of seconds; a queue of them, minutes
                ok = session.post(url, json=body, timeout=1800).status_code == 200
            except requests.RequestException:
                ok = False
            dt = time.perf_counter() - t
            with lock:
                if ok:
                    latencies.append(dt)
                else:
                    errors[0] += 1

    began = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - began
    lat = sorted(latencies)
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")  # noqa: E731
    return {"requests": len(lat), "errors": errors[0], "req_per_s": len(lat) / wall,
            "p50_ms": statistics.median(lat) * 1e3 if lat else float("nan"),
            "p99_ms": pick(0.99) * 1e3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="load per measurement")
    ap.add_argument("--port", type=int, default=8011, help="Serve HTTP port for the benchmark apps")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--max-batch-size", type=int, default=16, help="@serve.batch size of the batched apps")
    ap.add_argument("--model", default=None,
                    help="model to serve (models:/NAME@ALIAS, a run id, a folder); default: a random "
                         "1.4M-parameter model of the demo's shape with a 512-token context")
    ap.add_argument("--endpoints", nargs="+", default=["/v1/completions", "/v1/evaluate"],
                    choices=["/v1/completions", "/v1/evaluate"], help="endpoints to measure")
    ap.add_argument("--eval-max-new-tokens", type=int, default=None,
                    help="report tokens the evaluator asks for (default 16 for the random model, "
                         "400 for --model: the longest synthetic InstructScore report is 382 tokens)")
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/serving.json"))
    args = ap.parse_args()

    import ray

    from ringbit import serving
    from ringbit.services import PlatformSettings, ensure_client_env

    ensure_client_env()
    ray.init(address=PlatformSettings.from_env().ray_address, namespace="serve", log_to_driver=False,
             logging_level="ERROR")
    rows = []
    if args.model:
        # a real model's context holds the evaluator's default input cap; reports are long
        eval_args = {"max_new_tokens": args.eval_max_new_tokens or 400, "api": "auto"}
    else:  # max_input_chars sized to the 512-token model (checked at deploy time)
        eval_args = {"max_new_tokens": args.eval_max_new_tokens or 16, "max_input_chars": 300}
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(make_model(Path(tmp) / "model"))
        base = deploy(model, args.port, args.max_batch_size, eval_args)
        try:
            endpoints = {
                "/v1/completions": ("{mode}/v1/completions",
                                    {"prompt": "The for statement", "max_tokens": 16, "temperature": 0}),
                "/v1/evaluate": ("{mode}-eval", EVAL_ITEM),
            }
            endpoints = {k: v for k, v in endpoints.items() if k in args.endpoints}
            for endpoint, (path, body) in endpoints.items():
                for c in args.concurrency:
                    for mode in ("unbatched", "batched"):
                        url = f"{base}/{path.format(mode=mode)}"
                        load(url, body, 1 if args.model else min(c, 4), 1.0)  # warm-up
                        r = {"endpoint": endpoint, "concurrency": c, "batching": mode,
                             **load(url, body, c, args.seconds)}
                        rows.append(r)
                        print(f"{endpoint:<16} c={c:<3} {mode:<9} {r['req_per_s']:7.2f} req/s  "
                              f"p50 {r['p50_ms']:8.1f} ms  p99 {r['p99_ms']:8.1f} ms  "
                              f"({r['requests']} ok, {r['errors']} errors)", flush=True)
        finally:
            serving.shutdown([a for a in serving.status() if a.startswith("bench-")])

    summary = {}
    for endpoint in args.endpoints:
        for c in args.concurrency:
            b, u = (next(r for r in rows if r["endpoint"] == endpoint and r["concurrency"] == c
                         and r["batching"] == m) for m in ("batched", "unbatched"))
            summary[f"{endpoint}.c{c}.throughput_ratio"] = b["req_per_s"] / u["req_per_s"]
            summary[f"{endpoint}.c{c}.p99_ratio"] = b["p99_ms"] / u["p99_ms"]
    print("\nbatched / unbatched:")
    for k, v in summary.items():
        print(f"  {k:<40} {v:.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "ratios": summary, "seconds": args.seconds,
                               "max_batch_size": args.max_batch_size, "model": args.model or "random-demo-shape",
                               "evaluator": eval_args}, indent=2))
    print(f"wrote {out}")

    from ringbit.tracking import log_benchmark_run

    metrics = {k.replace("/", "_").strip("_"): v for k, v in summary.items()}
    for r in rows:
        key = f"{r['endpoint'].strip('/').replace('/', '_')}.c{r['concurrency']}.{r['batching']}"
        metrics.update({f"{key}.req_per_s": r["req_per_s"], f"{key}.p50_ms": r["p50_ms"],
                        f"{key}.p99_ms": r["p99_ms"]})
    log_benchmark_run("serving", {"seconds": args.seconds, "concurrency": args.concurrency,
                                  "max_batch_size": args.max_batch_size, "model": args.model or "random-demo-shape",
                                  "endpoints": args.endpoints, **{f"evaluator.{k}": v for k, v in eval_args.items()}},
                      metrics, [out])


if __name__ == "__main__":
    main()
