"""BitNet benchmark: storage, packed CPU inference speed, and training quality/cost vs FP.

    python benchmarks/bitnet.py [--quick] [--steps 300] [--skip-training]

1. Storage: packed projections vs bf16 (1-bit b1, ternary i2 and t3), and the whole checkpoint
   with embeddings, norms and LM head (kept in bf16) beside it, for the demo model and a
   125M-parameter shape.
2. CPU inference: PackedBitLinear (SubLN + int8 per-token activations + packed kernel) and the
   kernel alone vs fp32 nn.Linear, at M = 1 and M = 128 tokens on 2560x6912 and 6912x2560.
3. Training: the demo model as FP (nn.Linear), BitNet 1-bit and b1.58, each trained by Ray Train +
   DeepSpeed (2 workers, ZeRO-2) for the same steps and tokens with the same data: final val_ppl,
   tokens/s and peak RSS; plus one forward+backward in-process for step time and the bytes autograd
   keeps for backward.

Prints tables, writes benchmarks/results/bitnet.json and bitnet.png, and logs them to MLflow
(experiment ringbit-benchmarks) when a tracking server answers (`ringbit up`).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "platform"))
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("DS_ACCELERATOR", "cpu")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from ringbit.config import load_config  # noqa: E402
from ringbit.models.config import ModelConfig  # noqa: E402
from ringbit.quant.config import QuantConfig  # noqa: E402
from ringbit.train.config import PretrainConfig  # noqa: E402
from ringbit.models import Transformer  # noqa: E402
from ringbit.quant.bitlinear import BitLinear  # noqa: E402
from ringbit.quant.export import pack_model, size_report  # noqa: E402
from ringbit.quant.kernel import kernel_available, lowbit_matmul  # noqa: E402
from ringbit.quant.packed import PackedBitLinear  # noqa: E402
from ringbit.quant.packing import FORMATS  # noqa: E402

FORMAT_BITS = {"b1": 1, "i2": 1.58, "t3": 1.58}
SHAPE_125M = dict(vocab_size=32000, d_model=768, n_layers=12, n_heads=12, max_seq_len=2048)


def table(rows: list[dict], cols: list[str]) -> str:
    def fmt(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    width = {c: max(len(c), *(len(fmt(r[c])) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(width[c]) for c in cols)]
    lines += ["  ".join(fmt(r[c]).ljust(width[c]) for c in cols) for r in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------------- 1. storage


def storage(quick: bool) -> list[dict]:
    demo = load_config(PretrainConfig, REPO / "jobs/configs/demo.yaml").model
    shapes = {"demo (1.4M)": demo}
    if not quick:
        shapes["125M shape"] = ModelConfig(**SHAPE_125M)
    rows = []
    for label, cfg in shapes.items():
        for fmt, bits in FORMAT_BITS.items():
            torch.manual_seed(0)
            model = Transformer(cfg, quant=QuantConfig(weight_bits=bits)).eval()
            packed = pack_model(copy.deepcopy(model), ternary_format=fmt if fmt != "b1" else "i2")
            for p in packed.parameters():  # embeddings, norms, LM head in bf16, like the baseline
                p.data = p.data.to(torch.bfloat16)
            r = size_report(model, packed)
            rows.append({"model": label, "format": fmt, "bits": bits,
                         "linear_bf16_MB": r["linear_bf16_bytes"] / 1e6,
                         "linear_packed_MB": r["linear_packed_bytes"] / 1e6,
                         "linear_ratio": r["linear_ratio"],
                         "checkpoint_bf16_MB": r["checkpoint_bf16_bytes"] / 1e6,
                         "checkpoint_packed_MB": r["checkpoint_packed_bytes"] / 1e6,
                         "checkpoint_ratio": r["checkpoint_ratio"]})
            del model, packed
    return rows


# ------------------------------------------------------------------------------- 2. CPU speed


def timeit(fn, min_time: float) -> float:
    """Median seconds per call over repeats filling min_time (after two warm-up calls)."""
    fn(), fn()
    times, began = [], time.perf_counter()
    while time.perf_counter() - began < min_time or len(times) < 5:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


@torch.no_grad()
def inference(quick: bool) -> list[dict]:
    shapes = [(6912, 2560), (2560, 6912)]  # (out N, in K)
    rows, min_time = [], 0.3 if quick else 1.5
    for n, k in shapes:
        torch.manual_seed(0)
        dense = torch.nn.Linear(k, n, bias=False).eval()
        for m in (1, 128):
            x = torch.randn(m, k)
            fp32 = timeit(lambda: dense(x), min_time)
            rows.append({"shape": f"{n}x{k}", "M": m, "layer": "fp32 nn.Linear",
                         "ms": fp32 * 1e3, "speedup": 1.0})
            for fmt, bits in FORMAT_BITS.items():
                bit = BitLinear(k, n, QuantConfig(weight_bits=bits))
                bit.weight.data.copy_(dense.weight)
                packed = PackedBitLinear.from_bitlinear(bit.eval(), fmt)
                t_layer = timeit(lambda: packed(x), min_time)
                x8 = torch.randint(-127, 128, (m, k), dtype=torch.int8)
                t_kernel = timeit(lambda: lowbit_matmul(x8, packed.packed[0], packed.lut, k), min_time)
                rows.append({"shape": f"{n}x{k}", "M": m, "layer": f"packed {fmt} layer",
                             "ms": t_layer * 1e3, "speedup": fp32 / t_layer})
                rows.append({"shape": f"{n}x{k}", "M": m, "layer": f"packed {fmt} kernel only",
                             "ms": t_kernel * 1e3, "speedup": fp32 / t_kernel})
    return rows


# ------------------------------------------------------------------------------- 3. training

VARIANTS = {
    "fp (nn.Linear)": ("jobs/configs/demo.yaml", []),
    "bitnet 1-bit": ("jobs/configs/bitnet-1bit.yaml", []),
    "bitnet b1.58": ("jobs/configs/bitnet-b158.yaml", []),
}


def saved_for_backward_mb(model: torch.nn.Module, ids: torch.Tensor) -> tuple[float, float]:
    """(MB autograd keeps for backward in one forward, weights excluded; seconds per
    forward+backward+AdamW step) on one batch, in this process."""
    weights = {p.data_ptr() for p in model.parameters()}
    saved: dict[tuple, int] = {}

    def pack(t):
        if t.data_ptr() not in weights:
            saved[(t.data_ptr(), t.dtype, tuple(t.shape), t.stride())] = t.numel() * t.element_size()
        return t

    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step(hooks: bool = False):
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t) if hooks else contextlib.nullcontext():
            logits = model(ids[:, :-1])
            loss = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
        loss.backward()
        opt.step()
        opt.zero_grad()

    step(hooks=True)
    return sum(saved.values()) / 1e6, timeit(step, 2.0)


def training(steps: int, quick: bool) -> list[dict]:
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from ringbit.data.prepare import prepare
    from ringbit.train.loop import train_loop_per_worker

    rows = []
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for label, (path, extra) in VARIANTS.items():
                cfg = load_config(PretrainConfig, REPO / path, [
                    f"train.max_steps={steps}", f"train.eval_interval={steps}",
                    f"train.checkpoint_interval={steps}", "train.eval_batches=null", *extra])
                torch.manual_seed(0)
                model = Transformer(cfg.model, quant=cfg.quant)
                ids = torch.randint(0, cfg.model.vocab_size, (cfg.train.micro_batch_size,
                                                              cfg.data.seq_len + 1))
                saved_mb, step_s = saved_for_backward_mb(model, ids)
                data_dir = prepare(cfg.data, cfg.model.vocab_size, Path(tmp) / "data")
                log_path = Path(tmp) / "steps.json"
                result = TorchTrainer(
                    train_loop_per_worker,
                    train_loop_config={"job": cfg.model_dump(mode="json"), "data_dir": str(data_dir),
                                       "step_log_path": str(log_path)},
                    scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
                    run_config=RunConfig(name=f"bitnet-bench-{len(rows)}", storage_path=tmp),
                ).fit()
                step_times = [s["seconds"] for s in json.loads(log_path.read_text())[5:]]
                tokens = cfg.train.global_batch_size * cfg.data.seq_len
                rows.append({"model": label, "steps": steps, "tokens": steps * tokens,
                             "val_ppl": result.metrics["val_ppl"],
                             "tokens_per_s": tokens / statistics.median(step_times),
                             "peak_rss_MB": result.metrics["peak_memory_mb"],
                             "saved_for_backward_MB": saved_mb,
                             "fwd_bwd_step_ms": step_s * 1e3})
                print(table(rows[-1:], list(rows[-1])), flush=True)
    finally:
        ray.shutdown()
    fp = rows[0]
    for r in rows:
        r["ppl_vs_fp"] = r["val_ppl"] / fp["val_ppl"]
        r["step_time_vs_fp"] = fp["tokens_per_s"] / r["tokens_per_s"]
        r["saved_memory_vs_fp"] = r["saved_for_backward_MB"] / fp["saved_for_backward_MB"]
    return rows


# ------------------------------------------------------------------------------- 4. GPU


def gpu_training(steps: int) -> dict:
    """One CUDA device, plain PyTorch (what a Ray Train worker runs, minus DeepSpeed): FP vs 1-bit vs
    b1.58 at a 100M-parameter shape, bf16 autocast over fp32 latent weights, the same batches:
    losses (no NaN), tokens/s and peak GPU memory."""
    from ringbit.data.corpus import builtin_documents
    from ringbit.data.tokenizer import EOS, train_tokenizer

    if not torch.cuda.is_available():
        return {"gpu": "not available"}
    device = torch.device("cuda")
    docs = builtin_documents("builtin:python-docs")
    tok = train_tokenizer(docs, 8192)
    ids = torch.tensor(tok.encode(EOS.join(docs)).ids)
    seq, batch = 1024, 16
    rows = ids[: len(ids) // (seq + 1) * (seq + 1)].view(-1, seq + 1)
    val, train = rows[:32].to(device), rows[32:].to(device)
    cfg = ModelConfig(vocab_size=8192, d_model=768, n_layers=12, n_heads=12, max_seq_len=seq)
    variants = {"fp (nn.Linear)": None, "bitnet 1-bit": QuantConfig(weight_bits=1, subln="layernorm"),
                "bitnet b1.58": QuantConfig(weight_bits=1.58)}
    out = {"gpu": torch.cuda.get_device_name(device), "steps": steps, "seq_len": seq, "batch": batch,
           "train_rows": len(train), "rows": []}
    for label, quant in variants.items():
        torch.manual_seed(0)
        model = Transformer(cfg, quant=quant).to(device)
        lr = 1.5e-3 if quant else 6e-4
        opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20))
        torch.cuda.reset_peak_memory_stats(device)
        losses, times = [], []
        gen = torch.Generator().manual_seed(0)
        for step in range(steps):
            batch_rows = train[torch.randint(0, len(train), (batch,), generator=gen)]
            torch.cuda.synchronize()
            began = time.perf_counter()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits = model(batch_rows[:, :-1])
            loss = F.cross_entropy(logits.float().flatten(0, 1), batch_rows[:, 1:].flatten())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - began)
            losses.append(loss.item())
        model.eval()
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            val_loss = F.cross_entropy(model(val[:, :-1]).float().flatten(0, 1), val[:, 1:].flatten()).item()
        steady = statistics.median(times[5:])
        out["rows"].append({"model": label, "first_loss": losses[0], "final_train_loss": losses[-1],
                            "val_loss": val_loss, "val_ppl": float(torch.tensor(val_loss).exp()),
                            "nan": any(x != x for x in losses),
                            "tokens_per_s": batch * seq / steady,
                            "peak_gpu_GB": torch.cuda.max_memory_allocated(device) / 1e9})
        print(table(out["rows"][-1:], list(out["rows"][-1])), flush=True)
        del model, opt
        torch.cuda.empty_cache()
    fp = out["rows"][0]
    for r in out["rows"]:
        r["ppl_vs_fp"] = r["val_ppl"] / fp["val_ppl"]
        r["time_vs_fp"] = fp["tokens_per_s"] / r["tokens_per_s"]
        r["memory_vs_fp"] = r["peak_gpu_GB"] / fp["peak_gpu_GB"]
    return out


# ------------------------------------------------------------------------------- report


def plot(result: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 3 if result["training"] else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4))
    st = [r for r in result["storage"] if r["model"] == result["storage"][-1]["model"]]
    axes[0].bar([r["format"] for r in st], [r["linear_ratio"] for r in st], label="projections")
    axes[0].bar([r["format"] for r in st], [r["checkpoint_ratio"] for r in st], label="whole checkpoint")
    axes[0].set_title(f"size vs bf16 ({st[0]['model']})")
    axes[0].set_ylabel("x smaller")
    axes[0].legend()
    layers = [r for r in result["inference"] if r["layer"].endswith("layer")]
    labels = [f"{r['layer'].split()[1]}\n{r['shape']}\nM={r['M']}" for r in layers]
    axes[1].bar(range(len(layers)), [r["speedup"] for r in layers])
    axes[1].set_xticks(range(len(layers)), labels, fontsize=6)
    axes[1].axhline(1.0, color="k", lw=0.8)
    axes[1].set_title("packed layer speed-up over fp32 (CPU)")
    if result["training"]:
        tr = result["training"]
        axes[2].bar([r["model"] for r in tr], [r["val_ppl"] for r in tr])
        axes[2].set_title(f"val_ppl after {tr[0]['steps']} steps")
        axes[2].tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small shapes and short timings (smoke run)")
    ap.add_argument("--steps", type=int, default=300, help="training steps per model")
    ap.add_argument("--skip-training", action="store_true", help="sections 1 and 2 only")
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/bitnet.json"))
    ap.add_argument("--gpu", action="store_true",
                    help="section 4 alone: bf16 training of FP / 1-bit / b1.58 on one CUDA device")
    args = ap.parse_args()
    if args.gpu:
        result = gpu_training(args.steps)
        if "rows" in result:
            print(table(result["rows"], list(result["rows"][0])))
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
        return
    if not kernel_available():
        print("WARNING: the compiled kernel is not available; timings use the reference path")

    result = {"threads": torch.get_num_threads(), "kernel": kernel_available(),
              "formats": {n: FORMATS[n].codes_per_byte for n in FORMAT_BITS}}
    result["storage"] = storage(args.quick)
    print("\n== 1. storage (packed vs bf16; embeddings/norms/LM head in bf16) ==")
    print(table(result["storage"], list(result["storage"][0])), flush=True)
    result["inference"] = inference(args.quick)
    print(f"\n== 2. CPU inference, {result['threads']} threads (speedup = fp32 time / time) ==")
    print(table(result["inference"], ["shape", "M", "layer", "ms", "speedup"]), flush=True)
    result["training"] = [] if args.skip_training else training(args.steps, args.quick)
    if result["training"]:
        print("\n== 3. training at equal steps and tokens (2 workers, ZeRO-2) ==")
        print(table(result["training"], ["model", "steps", "val_ppl", "ppl_vs_fp", "tokens_per_s",
                                         "step_time_vs_fp", "peak_rss_MB", "saved_for_backward_MB",
                                         "saved_memory_vs_fp", "fwd_bwd_step_ms"]))

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    png = out.with_suffix(".png")
    plot(result, png)
    print(f"\nwrote {out} and {png}")

    from ringbit.tracking import log_benchmark_run

    metrics = {}
    for r in result["storage"]:
        key = f"{r['model'].split()[0]}.{r['format']}"
        metrics[f"storage.{key}.linear_ratio"] = r["linear_ratio"]
        metrics[f"storage.{key}.checkpoint_ratio"] = r["checkpoint_ratio"]
    for r in result["inference"]:
        key = f"{r['shape']}.M{r['M']}.{r['layer'].replace(' ', '_').replace('.', '')}"
        metrics[f"inference.{key}.speedup"] = r["speedup"]
    for r in result["training"]:
        key = r["model"].split()[-1].strip("()").replace(".", "")
        for k in ("val_ppl", "ppl_vs_fp", "tokens_per_s", "saved_for_backward_MB"):
            metrics[f"training.{key}.{k}"] = r[k]
    rid = log_benchmark_run("bitnet", {"threads": result["threads"], "steps": args.steps,
                                       "quick": args.quick}, metrics, [out, png])
    if rid:
        print(f"logged to MLflow run {rid}")


if __name__ == "__main__":
    main()
