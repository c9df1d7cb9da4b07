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


def _flip_box(box, h: int, w: int, flip_rows: bool, flip_cols: bool):
    x0, y0, x1, y1 = box
    if flip_cols:
        x0, x1 = w - 1 - x1, w - 1 - x0
    if flip_rows:
        y0, y1 = h - 1 - y1, h - 1 - y0
    return x0, y0, x1, y1


def save_overlay(path: str | Path, slice_uint8: np.ndarray, masks: Sequence[np.ndarray],
                 names: Sequence[str], colors: Sequence[tuple[float, float, float]],
                 boxes2d: Sequence[tuple[int, int, int, int] | None] = (),
                 title: str = "", flip_rows: bool = False, flip_cols: bool = False) -> Path:
    """Write a PNG: the slice on the left, slice + filled masks + boxes on the right.

    Args:
        slice_uint8: ``[H, W]`` or ``[H, W, 3]`` uint8 image as the model saw it.
        masks: one ``[H, W]`` 0/1 mask per segment.
        boxes2d: inclusive pixel boxes ``(x0, y0, x1, y1)`` to draw, one per mask (or None).
        flip_rows, flip_cols: mirror the picture (see :func:`radiological_flips`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = slice_uint8.shape[:2]
    rows = slice(None, None, -1) if flip_rows else slice(None)
    cols = slice(None, None, -1) if flip_cols else slice(None)
    slice_uint8 = slice_uint8[rows, cols]
    masks = [m[rows, cols] for m in masks]
    boxes2d = [None if b is None else _flip_box(b, h, w, flip_rows, flip_cols) for b in boxes2d]
    cmap = None if slice_uint8.ndim == 3 else "gray"
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.4))
    for ax in axes:
        ax.imshow(slice_uint8, cmap=cmap, vmin=0, vmax=255)
        ax.set_axis_off()
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
    axes[1].legend(handles=[Patch(color=c, label=n) for n, c in zip(names, colors)],
                   loc="lower center", bbox_to_anchor=(0.5, -0.12), ncol=min(3, len(names)),
                   fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
