"""Figures people look at rather than read (reconstructions, loss curves, confusion matrices, analysis heatmaps and
attention maps, probe results per layer, ...) and the one way they are saved: :func:`save_figure`. The backend is
chosen here, once, for machines without a display."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on training machines

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
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


def heatmap_figure(matrix: np.ndarray, layers: list[int], blocks: list[str], title: str) -> plt.Figure:
    """(layers, blocks) max |r| of the correlation analysis, annotated where it is small enough to read."""
    fig, ax = plt.subplots(
        figsize=(max(4.0, 0.9 * len(blocks) + 2.5), max(3.0, 0.35 * len(layers) + 1.5)), constrained_layout=True
    )
    image = ax.imshow(matrix, aspect="auto", cmap="viridis", vmin=0, vmax=1, origin="lower")
    ax.set_xticks(range(len(blocks)), blocks, rotation=45, ha="right")
    ax.set_yticks(range(len(layers)), [("embedding" if i == 0 else f"layer {i}") for i in layers])
    if matrix.size <= 400:
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(
                j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color="white" if value < 0.6 else "black"
            )
    fig.colorbar(image, ax=ax, label="max |r|")
    ax.set_title(title)
    return fig


def layer_weights_figure(weights: dict[str, np.ndarray]) -> plt.Figure:
    """One bar panel per task of its featurizer's softmax weights over hidden states (embedding output first)."""
    fig, axes = plt.subplots(
        len(weights), 1, figsize=(7, 2.2 * len(weights) + 0.5), squeeze=False, constrained_layout=True
    )
    for ax, (task, w) in zip(axes[:, 0], weights.items()):
        ax.bar(range(len(w)), w, color="tab:blue")
        ax.axhline(1 / len(w), color="grey", linewidth=0.8, linestyle="--", label="uniform")
        ax.set_ylabel("weight")
        ax.set_title(task)
        ax.set_xticks(range(len(w)), ["emb"] + [str(i) for i in range(1, len(w))])
    axes[-1, 0].set_xlabel("hidden state (emb = embedding output, then layers)")
    axes[0, 0].legend(loc="upper right")
    return fig


def attention_figure(maps: list[np.ndarray], titles: list[str], seconds: float, suptitle: str) -> plt.Figure:
    """One (tokens, tokens) map per panel; axes in seconds from the window start."""
    cols = min(4, len(maps))
    rows = -(-len(maps) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False, constrained_layout=True)
    for ax in axes.ravel()[len(maps) :]:
        ax.axis("off")
    for ax, values, title in zip(axes.ravel(), maps, titles):
        ax.imshow(
            values,
            cmap="magma",
            origin="upper",
            extent=(0, seconds, seconds, 0),
            interpolation="nearest",
            vmax=float(np.quantile(values, 0.99)) or None,
        )
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("key (s)", fontsize=8)
        ax.set_ylabel("query (s)", fontsize=8)
    fig.suptitle(suptitle)
    return fig


def probe_layers_figure(table) -> plt.Figure:
    """Each task's probe metric per layer (a line) and with the weighted sum of layers (dashed), from the probe
    table (columns ``task``, ``layer``, ``valid_<metric>`` and the test metrics)."""
    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    for name, part in table.groupby("task"):
        layered = part[part["layer"] != "weighted_sum"]
        metric = next(c for c in part.columns if c.startswith("valid_")).removeprefix("valid_")
        ax.plot(layered["layer"].astype(int), layered[metric], marker="o", label=f"{name} ({metric})")
        ax.axhline(
            float(part.loc[part["layer"] == "weighted_sum", metric].iloc[0]),
            linestyle="--",
            color=ax.lines[-1].get_color(),
            linewidth=0.8,
        )
    ax.set_xlabel("layer (0 = embeddings); dashed: weighted sum of layers")
    ax.set_ylabel("test metric")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig
