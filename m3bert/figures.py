"""Figures people look at rather than read: reconstructions and loss curves."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on training machines

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def reconstruction_figure(example: dict[str, torch.Tensor], title: str = "") -> plt.Figure:
    """Masked input, reconstruction and original of one clip as (channels x frames) images on one colour scale;
    the masked positions are outlined on the input."""
    original = example["original"].T.numpy()
    low, high = original.min(), original.max()
    fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True, constrained_layout=True)
    panels = [("masked input", example["masked"]), ("reconstruction", example["reconstruction"]),
              ("original", example["original"])]
    for ax, (label, values) in zip(axes, panels):
        image = ax.imshow(values.T.numpy(), aspect="auto", origin="lower", vmin=low, vmax=high,
                          interpolation="nearest", cmap="magma")
        ax.set_ylabel(f"{label}\nchannel")
    axes[0].contour(example["mask"].T.float().numpy(), levels=[0.5], colors="cyan", linewidths=0.6)
    axes[-1].set_xlabel("frame")
    fig.colorbar(image, ax=axes, shrink=0.6, label="normalised feature")
    if title:
        fig.suptitle(title)
    return fig


def loss_curves(history: list[dict], keys: tuple[str, ...] = ("train/loss", "val/loss")) -> plt.Figure:
    """Loss against step for each key present in ``history`` (rows of log.jsonl)."""
    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    for key in keys:
        points = [(row["step"], row[key]) for row in history if key in row]
        if points:
            steps, values = zip(*points)
            ax.plot(steps, values, label=key, marker="o" if len(points) < 30 else None)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig
