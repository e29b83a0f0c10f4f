"""Computer-control agent benchmark: MiniWoB++ episodes per minute with 1, 2 and 4 browser
actors, and where an episode's time goes (LLM vs browser, per executed action), in the same run.

    ringbit up && python benchmarks/agents.py [--episodes 16] [--browsers 1 2 4] [--llm-url URL --api chat]

The LLM is a real OpenAI-compatible endpoint: --llm-url, or (default) the platform's LM service
when `ringbit serve up` runs, else one deployed here (and removed after) with an untrained model of
the demo's width and a 2048-token context (its plans rarely parse, so episodes are short: speed,
not success, is measured). Real Chromium, real Ray
actors. Prints a table, writes benchmarks/results/agents.json and logs it to MLflow
(experiment ringbit-benchmarks).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "platform"))
sys.path.insert(0, str(REPO))
os.environ.setdefault("RAY_AUTH_MODE", "token")


def make_model(out: Path) -> Path:
    import torch

    from ringbit.models.config import ModelConfig
    from ringbit.data.corpus import builtin_documents
    from ringbit.data.tokenizer import train_tokenizer
    from ringbit.models import Transformer
    from ringbit.models.io import save_model_dir

    cfg = ModelConfig(vocab_size=4096, d_model=128, n_layers=4, n_heads=4, max_seq_len=2048)
    torch.manual_seed(0)
    tok = train_tokenizer(builtin_documents("builtin:python-topics"), cfg.vocab_size)
    return save_model_dir(out, cfg, Transformer(cfg).state_dict(), tok.to_str())


def deploy_lm(model: Path, port: int) -> str:
    from ray import serve

    from ringbit import serving

    serve.start(http_options={"host": "127.0.0.1", "port": port})
    app = {"name": "bench-agents-lm", "route_prefix": "/", "import_path": "serving.lm:app",
           "args": {"model": str(model), "max_batch_size": 8, "ray_actor_options": {"num_cpus": 0.5}}}
    serve.run(serving.build_application(app), name=app["name"], route_prefix="/")
    return f"http://127.0.0.1:{port}"


def measure(browsers: int, episodes: list[dict]) -> dict[str, float]:
    from ringbit.agents.browsers import BrowserPool

    pool = BrowserPool(browsers, cpus_per_browser=0.25)
    try:
        pool.run_all(episodes[:browsers])  # start every browser first: steady state is measured
        began = time.perf_counter()
        results = pool.run_all(episodes)
        wall = time.perf_counter() - began
    finally:
        pool.shutdown()
    steps = [s for r in results for t in r.get("trials", []) for s in t["steps"]]
    executed = [s for s in steps if s.get("ok")]  # actions that reached the browser
    llm_s = sum(r.get("llm_seconds", 0.0) for r in results)
    browser_s = sum(r.get("browser_s", 0.0) for r in results)
    calls = sum(r.get("llm_calls", 0) for r in results)
    return {"browsers": browsers, "episodes": len(results), "wall_s": wall,
            "episodes_per_minute": 60 * len(results) / wall, "errors": sum(bool(r.get("error")) for r in results),
            "llm_calls": calls, "steps": len(steps), "actions": len(executed),
            "llm_s_per_call": llm_s / max(calls, 1), "llm_s_per_episode": llm_s / len(results),
            "browser_s_per_episode": browser_s / len(results),
            "browser_s_per_action": sum(s["browser_s"] for s in executed) / max(len(executed), 1),
            "llm_share": llm_s / max(llm_s + browser_s, 1e-9)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=16, help="episodes per measurement")
    parser.add_argument("--tasks", default="click-button,click-link,focus-text,enter-text")
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=4)
    parser.add_argument("--llm-url", help="OpenAI-compatible endpoint (default: the platform's LM service, "
                                           "else an untrained model deployed here)")
    parser.add_argument("--model", help="model name at --llm-url")
    parser.add_argument("--api", choices=["completions", "chat"], default="completions",
                        help="chat for an instruct model's chat template (SmolLM2-135M-Instruct)")
    parser.add_argument("--browsers", type=int, nargs="+", default=[1, 2, 4], help="pool sizes to compare")
    parser.add_argument("--port", type=int, default=8012, help="Serve port for the default LM")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "agents.json")
    args = parser.parse_args()

    import ray

    from ringbit.agents.llm import DEFAULT_URL, LLMUnavailable, build_agent_llm
    from ringbit.agents.config import AgentLLMConfig
    from ringbit.services import PlatformSettings, ensure_client_env
    from ringbit.tracking import log_benchmark_run

    ensure_client_env()
    ray.init(address=os.environ.get("RAY_ADDRESS", PlatformSettings.from_env().ray_address), log_to_driver=False)
    url, deployed = args.llm_url, False
    if url is None:
        try:
            build_agent_llm(AgentLLMConfig(url=DEFAULT_URL, retries=0, timeout_s=5), check=True)
            url = DEFAULT_URL  # the platform's LM service (`ringbit serve up`)
        except LLMUnavailable:
            url, deployed = deploy_lm(make_model(Path(tempfile.mkdtemp()) / "lm"), args.port), True
    llm = build_agent_llm(AgentLLMConfig(url=url, model=args.model, api=args.api), check=True)
    llm_cfg = AgentLLMConfig(url=url, model=llm.client.model, api=args.api).model_dump()
    tasks = args.tasks.split(",")
    episodes = [{"task": tasks[i % len(tasks)], "seed": i, "llm": llm_cfg, "trials": args.trials,
                 "max_steps": args.max_steps, "episode_max_s": 300} for i in range(args.episodes)]
    from ringbit.agents.browsers import BrowserPoolUnschedulable

    rows = []
    for b in sorted(args.browsers):  # one line per pool size as it finishes: a measurement takes minutes
        print(f"measuring {len(episodes)} episodes on {b} browser(s) …", flush=True)
        try:
            rows.append(measure(b, episodes))
        except BrowserPoolUnschedulable as exc:  # larger pools will not fit either
            print(f"  skipped {b} browser(s) and more: {exc}", flush=True)
            break
        print(f"  {rows[-1]['episodes_per_minute']:.1f} episodes/min, {rows[-1]['actions']} actions", flush=True)
    if not rows:
        sys.exit("error: no pool size could be measured (see above)")
    if deployed:
        from ray import serve

        serve.shutdown()  # only what this script started (no Serve app was running)
    speedups = {f"speedup_{r['browsers']}_vs_{rows[0]['browsers']}": r["episodes_per_minute"] / rows[0]["episodes_per_minute"]
                for r in rows[1:]}

    print(f"\n{'browsers':>8} {'episodes/min':>12} {'LLM s/call':>10} {'LLM s/ep':>9} {'browser s/ep':>12} "
          f"{'browser s/action':>16} {'LLM share':>9} {'steps':>5} {'actions':>7} {'errors':>6}")
    for r in rows:
        print(f"{r['browsers']:>8} {r['episodes_per_minute']:>12.1f} {r['llm_s_per_call']:>10.3f} "
              f"{r['llm_s_per_episode']:>9.3f} {r['browser_s_per_episode']:>12.3f} {r['browser_s_per_action']:>16.3f} "
              f"{r['llm_share']:>9.2f} {r['steps']:>5} {r['actions']:>7} {r['errors']:>6}")
    for k, v in speedups.items():
        print(f"{k}: {v:.2f}x episodes/min")
    if not any(r["actions"] for r in rows):
        print("note: no action reached the browser (no plan parsed): the LLM/browser split is LLM time only")
    result = {"rows": rows, **speedups, "llm_url": url, "llm_model": llm.client.model, "api": args.api,
              "tasks": tasks, "trials": args.trials, "max_steps": args.max_steps, "cpus": os.cpu_count()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    metrics = dict(speedups)
    for r in rows:
        metrics.update({f"b{r['browsers']}.{k}": v for k, v in r.items() if k != "browsers"})
    log_benchmark_run("agents", {"episodes": args.episodes, "tasks": args.tasks, "llm_url": url}, metrics,
                      [args.out])


if __name__ == "__main__":
    main()
