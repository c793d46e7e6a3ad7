"""Figures people look at rather than read (reconstructions, loss curves, confusion matrices, ...) and the one way
they are saved: :func:`save_figure`."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on training machines

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from m3bert.common.files import atomic_write  # noqa: E402


def save_figure(fig: plt.Figure, path, dpi: int = 100) -> None:
    """Write ``fig`` as a PNG at ``path`` (atomically, creating folders) and close it."""
    atomic_write(path, lambda handle: fig.savefig(handle, dpi=dpi, format="png"))
    plt.close(fig)


def reconstruction_figure(example: dict[str, torch.Tensor], title: str = "") -> plt.Figure:
    """Masked input, reconstruction and original of one clip as (channels x frames) images on one colour scale;
    the masked positions are outlined on the input."""
    original = example["original"].T.numpy()
    low, high = original.min(), original.max()
    fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True, constrained_layout=True)
    panels = [
        ("masked input", example["masked"]),
        ("reconstruction", example["reconstruction"]),
        ("original", example["original"]),
    ]
    for ax, (label, values) in zip(axes, panels):
        image = ax.imshow(
            values.T.numpy(), aspect="auto", origin="lower", vmin=low, vmax=high, interpolation="nearest", cmap="magma"
        )
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


def confusion_matrix(matrix, classes, title: str = "") -> plt.Figure:
    """Row-normalised confusion matrix (true class down, predicted across), with counts in the cells."""
    import numpy as np

    share = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    size = max(4.0, 0.45 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size), constrained_layout=True)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(classes) <= 20:
        for i in range(len(classes)):
            for j in range(len(classes)):
                if matrix[i, j]:
                    ax.text(
                        j,
                        i,
                        int(matrix[i, j]),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if share[i, j] > 0.5 else "black",
                    )
    fig.colorbar(image, ax=ax, shrink=0.7, label="share of the true class")
    ax.set_title(title)
    return fig


def per_class_bars(values, classes, label: str, title: str = "") -> plt.Figure:
    import numpy as np

    order = np.argsort(np.nan_to_num(values, nan=-1.0))
    fig, ax = plt.subplots(figsize=(6, max(3.0, 0.22 * len(classes) + 1)), constrained_layout=True)
    ax.barh(range(len(classes)), np.asarray(values)[order], color="tab:blue")
    ax.set_yticks(range(len(classes)), [classes[i] for i in order], fontsize=7)
    ax.set_xlabel(label)
    ax.set_xlim(0, 1)
    ax.set_title(title)
    return fig


def regression_scatter(target, prediction, names, title: str = "") -> plt.Figure:
    """Predicted against true values per dimension (standardised units), with the identity line."""
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 4), constrained_layout=True, squeeze=False)
    for d, (ax, name) in enumerate(zip(axes[0], names)):
        ax.scatter(target[:, d], prediction[:, d], s=8, alpha=0.6)
        low, high = (
            float(min(target[:, d].min(), prediction[:, d].min())),
            float(max(target[:, d].max(), prediction[:, d].max())),
        )
        ax.plot([low, high], [low, high], color="grey", linewidth=0.8)
        ax.set_xlabel(f"true {name} (standardised)")
        ax.set_ylabel("predicted")
    fig.suptitle(title)
    return fig
