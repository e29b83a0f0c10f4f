"""A finished (or interrupted) sweep as a table, a CSV and PNG plots."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

COLUMNS = ["trial", "seq_len", "weight_bits", "lr", "status", "steps", "best_val_ppl",
           "tokens_per_s", "peak_memory_mb", "error"]


def write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def text_table(rows: list[dict[str, Any]]) -> str:
    def cell(v):
        if isinstance(v, float):
            return "-" if math.isnan(v) else f"{v:.4g}"
        return "-" if v is None else str(v)[:40]

    cols = [c for c in COLUMNS if c != "error" or any(r.get("error") for r in rows)]
    width = {c: max(len(c), *(len(cell(r.get(c))) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(width[c]) for c in cols)]
    lines += ["  ".join(cell(r.get(c)).ljust(width[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def plot_sweep(rows: list[dict[str, Any]], curves: dict[str, list[tuple[int, float]]],
               out_dir: Path) -> list[Path]:
    """heatmap (context x bits -> best val_ppl), val_ppl curves per trial, val_ppl vs bits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if not math.isnan(r["best_val_ppl"])]
    lengths = sorted({r["seq_len"] for r in rows})
    bits = sorted({r["weight_bits"] for r in rows})
    best: dict[tuple[int, float], float] = {}
    for r in done:  # the best trial of each cell (over lr and other swept keys)
        key = (r["seq_len"], r["weight_bits"])
        best[key] = min(best.get(key, math.inf), r["best_val_ppl"])
    paths = []

    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * len(bits), 1.2 + 0.8 * len(lengths)))
    grid = [[best.get((L, b), math.nan) for b in bits] for L in lengths]
    image = ax.imshow(grid, cmap="viridis_r", aspect="auto")
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            ax.text(j, i, "-" if math.isnan(v) else f"{v:.0f}", ha="center", va="center", color="w")
    ax.set_xticks(range(len(bits)), [f"{b:g}" for b in bits])
    ax.set_yticks(range(len(lengths)), [str(L) for L in lengths])
    ax.set_xlabel("weight bits")
    ax.set_ylabel("context length")
    ax.set_title("best val_ppl")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    paths.append(out_dir / "val_ppl_heatmap.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        points = curves.get(r["trial"], [])
        if points:
            ax.plot(*zip(*points), marker=".", label=f"L={r['seq_len']} w={r['weight_bits']:g}"
                    + (f" lr={r['lr']:g}" if r.get("lr") else "") + ("" if r["status"] == "finished" else f" ({r['status']})"))
    ax.set_xlabel("step")
    ax.set_ylabel("val_ppl")
    ax.set_yscale("log")
    ax.set_title("val_ppl per trial")
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(out_dir / "val_ppl_curves.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for L in lengths:
        xs = [b for b in bits if (L, b) in best]
        ax.plot(xs, [best[(L, b)] for b in xs], marker="o", label=f"context {L}")
    ax.set_xscale("log", base=2)
    ax.set_xticks(bits, [f"{b:g}" for b in bits])
    ax.set_xlabel("weight bits")
    ax.set_ylabel("best val_ppl")
    ax.set_title("perplexity vs bits")
    ax.legend()
    fig.tight_layout()
    paths.append(out_dir / "val_ppl_vs_bits.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths
