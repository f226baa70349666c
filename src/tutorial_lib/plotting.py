"""Plotting helpers the chapters share: labelled heatmaps and bar charts.

Three pictures come back again and again in this book:

- a matrix whose rows and columns have names: a document-term matrix (documents x words),
  a similarity matrix (sentences x sentences), an attention map (queries x keys);
- the best few items of a long list of scores: next-token probabilities, the words most
  similar to a given word;
- several lists of scores over the same items, side by side: the probabilities of the same
  tokens at several temperatures, or before and after a sampling filter.

``heatmap`` draws the first, ``top_k_bar`` the second and ``grouped_bar`` the third. All accept
lists, NumPy arrays,
PyTorch tensors and SciPy sparse matrices, draw on the ``ax`` you pass (or on a new figure),
label everything, and return the ``Axes``, so a notebook can add to the picture before it
ends the cell with ``plt.show()``. None changes matplotlib's global settings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator

from .validation import check_int

__all__ = ["CMAP", "BAR_COLOR", "grouped_bar", "heatmap", "top_k_bar"]

# One look for the whole book.
CMAP = "Blues"  # sequential colour map: light cells are small values, dark cells large ones
BAR_COLOR = "tab:blue"


def heatmap(
    matrix: Any,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    *,
    ax: Axes | None = None,
    title: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    colorbar_label: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    annotate: bool = True,
    fmt: str = ".3g",
    cmap: str = CMAP,
) -> Axes:
    """Draw a 2-D ``matrix`` as coloured cells, one labelled row and column per entry.

    Args:
        matrix: shape ``(rows, cols)``; ``matrix[i, j]`` is drawn in row ``i`` (top to bottom),
            column ``j`` (left to right).
        row_labels: one label per row, shown on the y axis.
        col_labels: one label per column, shown on the x axis.
        ax: the axes to draw on; a new figure sized to the matrix when ``None``.
        title, xlabel, ylabel, colorbar_label: text for the title, axes and colour bar.
        vmin, vmax: the values mapped to the lightest and darkest colour (default: the
            matrix's min and max). Fix them to compare several heatmaps, e.g. ``0`` and ``1``
            for attention weights.
        annotate: write each value in its cell (turn off for large matrices).
        fmt: format spec for those values, e.g. ``".3g"`` or ``".2f"``.
        cmap: a matplotlib colour map name.

    Returns:
        The axes drawn on; ``ax.images[0]`` holds the matrix.

    Raises:
        TypeError: ``matrix`` is not numeric, or a label argument is a single string.
        ValueError: ``matrix`` is not 2-D or is empty, or a label count does not match it.
    """
    values = _as_array(matrix, "matrix", ndim=2)  # (rows, cols)
    n_rows, n_cols = values.shape
    row_labels = _as_labels(row_labels, "row_labels", n_rows, "rows in matrix")
    col_labels = _as_labels(col_labels, "col_labels", n_cols, "columns in matrix")

    if ax is None:
        # About half an inch per cell, plus room for labels and the colour bar.
        size = (min(2.5 + 0.55 * n_cols, 16), min(1.5 + 0.45 * n_rows, 12))
        _, ax = plt.subplots(figsize=size, layout="constrained")

    # One coloured square per entry; "nearest" keeps the cells sharp.
    image = ax.imshow(
        values, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest"
    )
    colorbar = ax.figure.colorbar(image, ax=ax)
    if colorbar_label:
        colorbar.set_label(colorbar_label)
    if np.array_equal(values, np.round(values)):  # counts: whole-number ticks on the colour bar
        colorbar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))

    # Every row and column gets its label; long column labels are slanted to fit.
    ax.set_xticks(range(n_cols), labels=col_labels, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n_rows), labels=row_labels)
    # Thin white lines between the cells.
    ax.set_xticks(np.arange(n_cols + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(n_rows + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="minor", length=0)

    if annotate:
        # Dark text on light cells, white text on dark ones.
        shade = image.norm(values)  # (rows, cols), 0 = lightest colour, 1 = darkest
        for i in range(n_rows):
            for j in range(n_cols):
                color = "white" if shade[i, j] > 0.5 else "black"
                ax.text(
                    j,
                    i,
                    format(values[i, j], fmt),
                    ha="center",
                    va="center",
                    color=color,
                    fontsize=9,
                )

    _set_text(ax, title, xlabel, ylabel)
    return ax


def top_k_bar(
    labels: Sequence[str],
    scores: Any,
    k: int | None = None,
    *,
    ax: Axes | None = None,
    title: str | None = None,
    xlabel: str = "score",
    ylabel: str | None = None,
    fmt: str = ".3g",
    color: str = BAR_COLOR,
) -> Axes:
    """Draw the ``k`` highest ``scores`` as horizontal bars, the highest on top.

    Args:
        labels: one label per score (a word, a token, a sentence).
        scores: shape ``(n,)``: probabilities, similarities, logits...
        k: how many bars, from 1 to ``n``; all ``n`` when ``None``. Equal scores keep
            their input order.
        ax: the axes to draw on; a new figure sized to ``k`` when ``None``.
        title, xlabel, ylabel: text for the title and axes.
        fmt: format spec for the value written at the end of each bar.
        color: the bars' colour.

    Returns:
        The axes drawn on; ``ax.patches`` are the bars, highest score first.

    Raises:
        TypeError: ``scores`` is not numeric, ``labels`` is a single string, or ``k`` is
            not an integer.
        ValueError: ``scores`` is not 1-D or is empty, ``labels`` has a different length,
            or ``k`` is out of range.
    """
    values = _as_array(scores, "scores", ndim=1)  # (n,)
    labels = _as_labels(labels, "labels", len(values), "scores")
    if k is None:
        k = len(values)
    check_int("k", k, minimum=1, maximum=len(values))  # at most len(scores)

    # Indices of the k largest scores, largest first ("stable" keeps ties in input order).
    top = np.argsort(-values, kind="stable")[:k]  # (k,)

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.8 + 0.35 * k), layout="constrained")
    bars = ax.barh(range(k), values[top], color=color)
    ax.bar_label(bars, labels=[format(v, fmt) for v in values[top]], padding=3, fontsize=9)
    ax.set_yticks(range(k), labels=[labels[i] for i in top])
    ax.invert_yaxis()  # bar 0 (the highest score) at the top
    ax.margins(x=0.15)  # room for the values written after the bars
    _set_text(ax, title, xlabel, ylabel)
    return ax


def grouped_bar(
    labels: Sequence[str],
    series: Mapping[str, Any],
    *,
    ax: Axes | None = None,
    title: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
) -> Axes:
    """Draw several series of scores over the same labels as groups of side-by-side bars.

    One group per label, one bar per series in each group, and a legend naming the series:
    for example the probabilities of ten tokens (the labels) at three temperatures (the series).

    Args:
        labels: one label per group, shown on the x axis.
        series: series name -> its scores, shape ``(len(labels),)``; drawn left to right in
            the order given, each in the next colour of matplotlib's colour cycle.
        ax: the axes to draw on; a new figure sized to the number of bars when ``None``.
        title, xlabel, ylabel: text for the title and axes.

    Returns:
        The axes drawn on; ``ax.containers[i]`` holds the bars of the ``i``-th series.

    Raises:
        TypeError: ``series`` is not a mapping, holds scores that are not numeric, or
            ``labels`` is a single string.
        ValueError: ``series`` is empty, or a series is not 1-D, is empty, or has a length
            other than ``len(labels)``.
    """
    if not isinstance(series, Mapping):
        raise TypeError(f"series must be a mapping of name -> scores, got {type(series).__name__}")
    if not series:
        raise ValueError("series must hold at least one named series, got an empty mapping")
    values = {name: _as_array(v, f"series[{name!r}]", ndim=1) for name, v in series.items()}
    n_groups = len(next(iter(values.values())))
    labels = _as_labels(labels, "labels", n_groups, "scores in each series")
    for name, v in values.items():
        if len(v) != n_groups:
            raise ValueError(
                f"series[{name!r}] has {len(v)} scores, but there are {n_groups} labels"
            )

    if ax is None:
        size = (min(3 + 0.25 * n_groups * len(values), 14), 4)
        _, ax = plt.subplots(figsize=size, layout="constrained")
    # Each group is 0.8 wide; its bars sit side by side, centred on the label's tick.
    width = 0.8 / len(values)
    for i, (name, v) in enumerate(values.items()):
        offset = (i - (len(values) - 1) / 2) * width
        ax.bar(np.arange(n_groups) + offset, v, width=width, label=str(name))
    ax.set_xticks(range(n_groups), labels=labels, rotation=45, ha="right", rotation_mode="anchor")
    ax.legend()
    _set_text(ax, title, xlabel, ylabel)
    return ax


def _as_array(values: Any, name: str, ndim: int) -> np.ndarray:
    """``values`` as a float NumPy array with ``ndim`` dimensions, or a clear error."""
    if hasattr(values, "toarray"):  # a SciPy sparse matrix, e.g. CountVectorizer's output
        values = values.toarray()
    if hasattr(values, "detach"):  # a PyTorch tensor: leave autograd, move to CPU, make fp32
        values = values.detach().cpu().float()
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must hold numbers, got {type(values).__name__}: {e}") from e
    if array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {array.shape}")
    return array


def _as_labels(labels: Sequence[str], name: str, expected: int, what: str) -> list[str]:
    """``labels`` as a list of ``expected`` strings, or a clear error."""
    if isinstance(labels, str):
        raise TypeError(f"{name} must be a sequence of labels, not the single string {labels!r}")
    labels = [str(label) for label in labels]
    if len(labels) != expected:
        raise ValueError(f"{name} has {len(labels)} labels, but there are {expected} {what}")
    return labels


def _set_text(ax: Axes, title: str | None, xlabel: str | None, ylabel: str | None) -> None:
    """Set whichever of title and axis labels are given."""
    if title:
        ax.set_title(title)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
