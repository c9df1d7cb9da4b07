"""Overlay figures: an image slice with segment outlines and the prompt boxes (matplotlib)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def radiological_flips(direction: Sequence[float]) -> tuple[bool, bool]:
    """Row/column flips that show an axial slice of a SimpleITK image (direction in LPS, 9
    numbers) the radiological way: anterior up, the patient's left on the image's right."""
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    return bool(d[1, 1] < 0), bool(d[0, 0] < 0)


# Patient-axis letters of the LPS directions +x, +y, +z (and their opposites).
_LETTERS = (("L", "R"), ("P", "A"), ("S", "I"))


def _letters(vector: np.ndarray) -> str:
    """Patient-direction letters of an LPS ``vector``: its main axis first, then any axis with a
    sizeable share (over 0.35 of a unit vector, ~20 degrees), as Slicer labels oblique views."""
    v = np.asarray(vector, dtype=float)
    v = v / (np.linalg.norm(v) or 1.0)
    order = np.argsort(-np.abs(v))
    return "".join(_LETTERS[i][0 if v[i] > 0 else 1] for i in order if abs(v[i]) > 0.35) or "?"


def orientation_letters(direction: Sequence[float], flip_rows: bool = False,
                        flip_cols: bool = False) -> dict[str, str]:
    """Which patient side each edge of a displayed axial slice faces.

    Args:
        direction: a 3D SimpleITK image's direction (9 numbers, LPS; column ``i`` is index
            axis ``i``). The slice shows array rows (``y``) downwards and columns (``x``) to
            the right, mirrored by ``flip_rows`` / ``flip_cols``.

    Returns:
        ``{"left": ..., "right": ..., "top": ..., "bottom": ...}``, e.g. ``R``/``L``/``A``/``P``
        for a radiological axial view.
    """
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    rightwards = -d[:, 0] if flip_cols else d[:, 0]
    downwards = -d[:, 1] if flip_rows else d[:, 1]
    return {"left": _letters(-rightwards), "right": _letters(rightwards),
            "top": _letters(-downwards), "bottom": _letters(downwards)}


def draw_orientation_letters(ax, letters: dict[str, str], fontsize: float = 11) -> list:
    """Write ``letters`` (see :func:`orientation_letters`) inside the four edges of an image
    axis, white on a dark outline so that they read on any image; returns the text artists."""
    from matplotlib import patheffects

    places = {"left": (0.015, 0.5, "left", "center"), "right": (0.985, 0.5, "right", "center"),
              "top": (0.5, 0.985, "center", "top"), "bottom": (0.5, 0.015, "center", "bottom")}
    texts = []
    for edge, (x, y, ha, va) in places.items():
        text = ax.text(x, y, letters[edge], transform=ax.transAxes, ha=ha, va=va, color="white",
                       fontsize=fontsize, fontweight="bold", gid=f"orientation-{edge}")
        text.set_path_effects([patheffects.withStroke(linewidth=2.5, foreground="black")])
        texts.append(text)
    return texts


def _flip_box(box, h: int, w: int, flip_rows: bool, flip_cols: bool):
    x0, y0, x1, y1 = box
    if flip_cols:
        x0, x1 = w - 1 - x1, w - 1 - x0
    if flip_rows:
        y0, y1 = h - 1 - y1, h - 1 - y0
    return x0, y0, x1, y1


def overlay_figure(slice_uint8: np.ndarray, masks: Sequence[np.ndarray], names: Sequence[str],
                   colors: Sequence[tuple[float, float, float]],
                   boxes2d: Sequence[tuple[int, int, int, int] | None] = (), title: str = "",
                   flip_rows: bool = False, flip_cols: bool = False,
                   direction: Sequence[float] | None = None):
    """The overlay as a matplotlib figure (see :func:`save_overlay`); the caller closes it.

    Titles and the legend (one entry per mask, in rows of up to three) are laid out by
    matplotlib's constrained layout, so they stay inside the figure for any number of masks.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    h, w = slice_uint8.shape[:2]
    rows = slice(None, None, -1) if flip_rows else slice(None)
    cols = slice(None, None, -1) if flip_cols else slice(None)
    slice_uint8 = slice_uint8[rows, cols]
    masks = [m[rows, cols] for m in masks]
    boxes2d = [None if b is None else _flip_box(b, h, w, flip_rows, flip_cols) for b in boxes2d]
    cmap = None if slice_uint8.ndim == 3 else "gray"
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.6), layout="constrained")
    for ax in axes:
        ax.imshow(slice_uint8, cmap=cmap, vmin=0, vmax=255)
        ax.set_axis_off()
        if direction is not None and len(direction) == 9:
            draw_orientation_letters(ax, orientation_letters(direction, flip_rows, flip_cols))
    axes[0].set_title("Image")
    axes[1].set_title(title or "LiteMedSAM segmentation")
    for mask, color, box in zip(masks, colors, list(boxes2d) + [None] * len(masks)):
        rgba = np.zeros((*mask.shape, 4))
        rgba[mask > 0] = (*color, 0.45)
        axes[1].imshow(rgba)
        if mask.any():
            axes[1].contour(mask, levels=[0.5], colors=[color], linewidths=1.2)
        if box is not None:
            x0, y0, x1, y1 = box
            axes[1].add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1,
                                        fill=False, edgecolor=color, linewidth=1.5, linestyle="--"))
    fig.legend(handles=[Patch(color=c, label=n) for n, c in zip(names, colors)], loc="outside lower center",
               ncol=max(1, min(3, len(names))), fontsize=9, frameon=False)
    return fig


def check_picture_path(path: str | Path) -> None:
    """Raise a clear error unless matplotlib can write a picture at ``path`` (by its suffix):
    checked before the work, not when the picture is saved after it."""
    from matplotlib.figure import Figure

    from .errors import LiteMedSAMError

    suffix = Path(path).suffix.lower().lstrip(".")
    known = Figure().canvas.get_supported_filetypes()
    if suffix not in known:
        common = [f".{k}" for k in ("jpg", "pdf", "svg", "tif") if k in known]
        raise LiteMedSAMError(f"cannot write a picture as {Path(path).name}: use .png"
                              + (f" (or {', '.join(common)})" if common else ""))


def save_overlay(path: str | Path, slice_uint8: np.ndarray, masks: Sequence[np.ndarray],
                 names: Sequence[str], colors: Sequence[tuple[float, float, float]],
                 boxes2d: Sequence[tuple[int, int, int, int] | None] = (),
                 title: str = "", flip_rows: bool = False, flip_cols: bool = False,
                 direction: Sequence[float] | None = None) -> Path:
    """Write a PNG: the slice on the left, slice + filled masks + boxes on the right, a legend
    with every mask's name below, and orientation letters on each panel.

    Args:
        slice_uint8: ``[H, W]`` or ``[H, W, 3]`` uint8 image as the model saw it.
        masks: one ``[H, W]`` 0/1 mask per segment.
        names, colors: one per mask, for the legend and the fills.
        boxes2d: inclusive pixel boxes ``(x0, y0, x1, y1)`` to draw, one per mask (or None).
        flip_rows, flip_cols: mirror the picture (see :func:`radiological_flips`).
        direction: the 3D image's direction (9 numbers, LPS) for the orientation letters;
            None (2D images) writes none.
    """
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = overlay_figure(slice_uint8, masks, names, colors, boxes2d, title, flip_rows, flip_cols, direction)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
