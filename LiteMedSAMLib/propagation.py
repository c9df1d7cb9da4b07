"""3D segmentation by mid-slice box propagation, as the official LiteMedSAM script does it.

For each 3D box the middle slice of its z range is prompted with the box itself; then the
sweep goes upward to the last slice and downward from the middle to the first, each slice
prompted with the bounding box of its neighbour's mask (computed on the mask resized to
model space, enlarged by 3 pixels); where the neighbour's mask is empty the slice falls back
to the middle slice's box. This is ``MedSAM_infer_npz_3D`` of ``CVPR24_LiteMedSAM_infer.py``.

Box convention: our boxes are inclusive voxel indices and every slice ``z0..z1`` is
segmented. The official script takes ``(z_min, z_max)`` and segments the slices strictly
between them, so our box ``z0..z1`` is its box ``(z0 - 1, z1 + 1)``; the middle slice is
computed from those values, exactly as the script does.

Unlike the official script, every box gets its own mask: overlapping objects never
overwrite each other (the script also resizes the neighbour mask with its label value,
``k`` for the k-th box; we use 1 for every box, which is what it does for the first box).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .boxes import Box3D, SliceBox, check_box, check_slice_box
from .errors import LiteMedSAMError, SegmentationCancelled, check_cancel  # noqa: F401 (re-exported)
from .predictor import VolumePredictor, log
from .preprocessing import box_from_mask_model, box_to_model

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(slices_done, slices_total)`` after each slice (and with 0 slices done
when the work starts, so that a rate can leave out what came before)."""
CancelCheck = Callable[[], bool]
"""Called before each slice; returning True stops the run with :class:`SegmentationCancelled`."""


def middle_slice(z0: int, z1: int) -> int:
    """The official middle slice of the inclusive range ``z0..z1``."""
    z_min, z_max = z0 - 1, z1 + 1
    return int((z_max - z_min) / 2 + z_min)


def sweep_order(z0: int, z1: int, mid: int | None = None) -> list[int]:
    """Slices in the order they are segmented: the middle (or ``mid``, a 2D box's slice) up to
    ``z1``, then down to ``z0``."""
    mid = middle_slice(z0, z1) if mid is None else mid
    return list(range(mid, z1 + 1)) + list(range(mid - 1, z0 - 1, -1))


def propagate_box(predictor: VolumePredictor, box: Box3D,
                  on_slice: Callable[[], None] | None = None,
                  should_cancel: CancelCheck | None = None) -> np.ndarray:
    """Segment one validated box through its slice range; returns a uint8 ``[z, y, x]`` mask."""
    nz, h, w = predictor.shape
    mask = np.zeros((nz, h, w), dtype=np.uint8)
    mid = middle_slice(box.z0, box.z1)
    mid_box = box_to_model(box.box2d, (h, w))
    for z in sweep_order(box.z0, box.z1):
        check_cancel(should_cancel)
        neighbour = z - 1 if z > mid else z + 1
        box_model = None
        if z != mid:
            box_model = box_from_mask_model(mask[neighbour])
        if box_model is None:
            box_model = mid_box
        mask[z] = predictor.predict_model_box(z, box_model).mask
        if on_slice is not None:
            on_slice()
    return mask


def check_boxes(boxes: Sequence[Box3D | SliceBox | Sequence[int]],
                   shape: tuple[int, int, int]) -> list[Box3D | SliceBox]:
    """Validate (and clip, with a logged warning) every box before any work starts."""
    if len(boxes) == 0:
        raise LiteMedSAMError("no box given: give at least one box to segment")
    valid = []
    for i, box in enumerate(boxes, start=1):
        check = check_slice_box if isinstance(box, SliceBox) else check_box
        checked, notes = check(box, shape, name=f"box {i}")
        for note in notes:
            log.warning(note)
        valid.append(checked)
    return valid


def segment_volume(predictor: VolumePredictor, boxes: Sequence[Box3D | SliceBox | Sequence[int]],
                   progress: ProgressCallback | None = None,
                   should_cancel: CancelCheck | None = None, pipeline=None) -> list[np.ndarray]:
    """Segment each box of the predictor's volume by propagation from one slice.

    Args:
        predictor: a :class:`VolumePredictor` with a volume set.
        boxes: inclusive voxel boxes ``(x0, y0, z0, x1, y1, z1)`` or :class:`Box3D` (swept from
            the middle slice), or :class:`SliceBox` (a 2D box swept from its slice until the
            object ends).
        progress: see :data:`ProgressCallback`; the total counts the slices of all boxes.
        should_cancel: see :data:`CancelCheck`.
        pipeline: a :class:`~LiteMedSAMLib.pipeline.Pipeline` or name; default ``"default"``
            (``"official"``: the official script's masks, see :func:`propagate_box`).
    Returns:
        one uint8 mask ``[z, y, x]`` (0/1) per box, in the order of ``boxes``.
    Raises:
        SegmentationCancelled: when ``should_cancel`` returned True.
    """
    from .refinement import RefinementSession

    valid = check_boxes(boxes, predictor.shape)
    on_slice = slice_counter(valid, progress)
    return [RefinementSession(predictor, box, pipeline=pipeline, corrections=False).run(should_cancel, on_slice)
            for box in valid]


def slice_counter(boxes: Sequence[Box3D | SliceBox], progress: ProgressCallback | None) -> Callable[[], None]:
    """A callable to call after each slice: reports ``progress(done, total)`` over all the
    slices of validated ``boxes`` (a :class:`SliceBox` counts its whole allowed range), after
    ``progress(0, total)`` now, when the work starts."""
    total = sum(b.z_max - b.z_min + 1 if isinstance(b, SliceBox) else len(b.z_range) for b in boxes)
    done = 0
    if progress is not None:
        progress(0, total)

    def on_slice() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    return on_slice


def segment_slice(predictor: VolumePredictor, z: int,
                  box2d: tuple[int, int, int, int]) -> np.ndarray:
    """Segment one slice ``z`` inside an inclusive pixel box ``(x0, y0, x1, y1)``; returns a
    uint8 ``[z, y, x]`` mask that is zero outside slice ``z``."""
    nz, h, w = predictor.shape
    mask = np.zeros((nz, h, w), dtype=np.uint8)
    mask[z] = predictor.predict_slice(z, box2d).mask
    return mask
