"""Segmentation of a whole image: the one entry point the command line, batch runs, tools
and the Slicer module share.

:func:`segment_image` takes a SimpleITK image and boxes in voxel indices, builds the
predictor for a model and mode, and returns one mask per box (3D propagation, one slice,
or a box run followed by point corrections).
"""

from __future__ import annotations

from .errors import LiteMedSAMError


def segment_image(image, boxes, *, model_name: str | None = None, weights: str | None = None,
                  preset: str = "auto", window: tuple[float, float] | None = None,
                  slice_index: int | None = None, progress=None, should_cancel=None,
                  mode: str | None = None, threads: int | None = None, points=(), pipeline=None,
                  predictor=None):
    """Segment a SimpleITK image inside each box.

    ``boxes`` are :class:`~LiteMedSAMLib.boxes.Box3D` (swept from the middle slice to the box's
    ends) or :class:`~LiteMedSAMLib.boxes.SliceBox` (a 2D box swept from its slice until the
    object ends). Returns ``(masks, predictor)``: one uint8 mask per box with the image's array
    shape (``[z, y, x]``; ``[y, x]`` for a 2D image), and the predictor (for its normalised
    slices and ``encoder_runs``). With ``slice_index`` only that slice is segmented, with each
    box's x/y extent. ``mode`` is a backend mode (see :mod:`LiteMedSAMLib.backends`; default
    ``exact``); ``pipeline`` a :class:`~LiteMedSAMLib.pipeline.Pipeline` or its name (default
    ``"default"``; ``"official"`` gives the official script's masks).
    ``points``: corrections ``(x, y, z, positive)`` in voxel indices (``z`` 0 for a 2D image),
    each applied, in order, to the one box that contains it (see :mod:`~LiteMedSAMLib.refinement`).
    ``predictor``: a predictor to reuse (from :func:`~LiteMedSAMLib.backends.make_predictor`,
    for the caller's model and mode; ``model_name``, ``weights``, ``mode`` and ``threads`` are
    then not used), so that a batch loads and converts the model once for many images.
    """
    import SimpleITK as sitk

    from .backends import DEFAULT_MODE, make_predictor
    from .boxes import Box3D, SliceBox
    from .imageio import check_image
    from .propagation import check_boxes, segment_volume
    from .registry import load_model

    info = check_image(image)
    array = sitk.GetArrayFromImage(image)
    if predictor is None:
        predictor = make_predictor(load_model(model_name, weights), mode or DEFAULT_MODE, threads=threads)
    spacing = float(image.GetSpacing()[2]) if info.dimension == 3 else None
    predictor.set_volume(array, preset=preset, window=window, slice_spacing=spacing)
    boxes = check_boxes(boxes, predictor.shape)
    if slice_index is not None:
        predictor.check_slice(slice_index)
        for i, box in enumerate(boxes, start=1):
            if isinstance(box, SliceBox):
                raise LiteMedSAMError(f"box {i} is a 2D start (a box on slice {box.z}); a single-slice run "
                                      "takes 3D boxes and segments them on that slice only")
            if not box.z0 <= slice_index <= box.z1:
                raise LiteMedSAMError(f"slice {slice_index} is outside box {i}'s slices {box.z0}..{box.z1}")
        # each box on that slice only
        boxes = [Box3D(b.x0, b.y0, slice_index, b.x1, b.y1, slice_index) for b in boxes]
    if points:
        masks = segment_with_points(predictor, boxes, points, progress, should_cancel, pipeline)
    else:
        masks = segment_volume(predictor, boxes, progress=progress, should_cancel=should_cancel,
                               pipeline=pipeline)
    if info.dimension == 2:
        masks = [m[0] for m in masks]
    return masks, predictor


def _contains(box, x: float, y: float, z: float) -> bool:
    from .boxes import SliceBox

    z0, z1 = (box.z_min, box.z_max) if isinstance(box, SliceBox) else (box.z0, box.z1)
    return box.x0 <= x <= box.x1 and box.y0 <= y <= box.y1 and z0 <= z <= z1


def segment_with_points(predictor, boxes, points, progress, should_cancel, pipeline=None):
    """Each (validated) box as a refinement session: its box run, then its points in order."""
    from .propagation import slice_counter
    from .refinement import RefinementSession

    owner = []
    for x, y, z, positive in points:
        inside = [i for i, b in enumerate(boxes) if _contains(b, x, y, z)]
        what = f"{'object' if positive else 'background'} point ({x:g}, {y:g}, {z:g})"
        if len(inside) != 1:
            where = "no box" if not inside else "boxes " + ", ".join(str(i + 1) for i in inside)
            raise LiteMedSAMError(f"{what} lies in {where}; each point must lie in exactly one box "
                                  "(inclusive voxel indices)")
        owner.append(inside[0])
    on_slice = slice_counter(boxes, progress)
    masks = []
    for i, box in enumerate(boxes):
        session = RefinementSession(predictor, box, pipeline=pipeline, corrections=i in owner)
        session.run(should_cancel, on_slice)
        for (x, y, z, positive), j in zip(points, owner):
            if j == i:
                session.add_point(round(z), x, y, positive)
        masks.append(session.mask)
    return masks
