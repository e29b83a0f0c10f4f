"""PNG plots logged to MLflow, for people who would rather look than read."""

from __future__ import annotations

import tempfile
from pathlib import Path

from mlflow.tracking import MlflowClient


def log_training_curves(client: MlflowClient, run_id: str, title: str) -> str:
    """train_loss and val_ppl against step, side by side, as `training_curves.png`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, label in ((left, "train_loss", "train loss (nats/token)"), (right, "val_ppl", "validation perplexity")):
        points = sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        if points:
            ax.plot(*zip(*points), marker="o" if key == "val_ppl" else None, ms=3)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    right.set_yscale("log")
    fig.suptitle(title)
    fig.tight_layout()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "training_curves.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        client.log_artifact(run_id, str(path))
    return "training_curves.png"
