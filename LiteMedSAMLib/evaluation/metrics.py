"""Segmentation accuracy metrics as the CVPR24 "MedSAM on laptop" challenge computes them.

- :func:`dice`: the Dice similarity coefficient (DSC).
- :func:`normalized_surface_dice`: the normalized surface Dice (NSD) at a tolerance in mm.

The challenge evaluates NSD with DeepMind's ``surface_distance`` code (``SurfaceDice.py`` in
the challenge and MedSAM repositories: ``compute_surface_distances`` followed by
``compute_surface_dice_at_tolerance`` with a 2 mm tolerance). This module re-implements that
algorithm in numpy/scipy (Nikolov et al., "Clinically applicable segmentation of head and
neck anatomy for radiotherapy", arXiv:1809.04430; github.com/google-deepmind/surface-distance,
Apache-2.0). The PyPI copies of that package (``surface-distance``,
``surface-distance-based-measures`` 0.1) still use ``np.Inf``/``np.NaN``, which NumPy 2
removed, so they are not used.

The algorithm: surface elements sit on the voxel-corner lattice. Each corner point gets the
8-bit code of its 2x2x2 voxel neighbourhood (4-bit, 2x2, in 2D); points whose neighbourhood
is neither empty nor full are surface points. Each surface point carries the area (3D) or
contour length (2D) of the marching-cubes surface through its neighbourhood, scaled by the
voxel spacing. Distances from each surface point to the other mask's nearest surface point
come from a Euclidean distance transform with the spacing. NSD is the area-weighted fraction
of both surfaces that lies within the tolerance of the other surface.

Empty masks (labels absent from both, or from one): DSC and NSD are 1.0 when both masks are
empty and 0.0 when exactly one is, as the challenge scores missing and spurious targets
(the CVPR24 script only scores labels present in the ground truth, where an empty
prediction scores 0.0; DeepMind's raw functions return NaN for two empty masks).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import LiteMedSAMError

__all__ = ["dice", "evaluate_files", "normalized_surface_dice", "pair_segments", "per_label_metrics",
           "surface_distances"]

# Weights that turn a 2x2x2 (2x2) neighbourhood into its code, applied with
# scipy.ndimage.correlate exactly as DeepMind's implementation does.
_ENCODE_3D = np.array([[[128, 64], [32, 16]], [[8, 4], [2, 1]]])
_ENCODE_2D = np.array([[8, 4], [2, 1]])

# Surfel normals for each of the 256 neighbourhood codes: the marching-cubes triangles through a
# 2x2x2 neighbourhood, one vector per triangle whose length is the triangle's area for unit
# spacing. Data from DeepMind's lookup_tables.py (_NEIGHBOUR_CODE_TO_NORMALS, Copyright 2018
# Google Inc., Apache License 2.0), re-encoded: every component is a multiple of 1/8, written as
# one digit d for (d - 4) / 8; a code's triangles are consecutive digit triples (x0, x1, x2 in
# array-axis order), codes are separated by spaces, code 0 first.
_NORMALS_X8 = (
    "444 555 335 224664 535 242646 535335 844666555 "
    "355 555355 246246 844226335 624624 844626353 044266355 844844 "
    "533 422466 335533 404666555 535533 440666333 335535533 333222666555 "
    "355533 422466355 246246533 555777426246 533624624 777462333264 044333222555 044333222 "
    "535 555535 426462 404553662 535535 535242646 426462535 117466553242 "
    "355535 555535355 448226335 662662553335 535624624 844626353535 462711355664 044226335 "
    "624264 484266533 484535262 484404 624264535 111246333264 555404222333 404222333 "
    "355624264 484662335335 171224353246 484662335 624264624624 224224335 555224224 224224 "
    "335 555335 335335 335224664 426426 448626535 426426335 717422353664 "
    "335355 555335355 335246246 844226335335 484262535 262262353353 242711462355 844262535 "
    "246642 448266355 335246642 242177224355 440662335 448448 555555666448 555666448 "
    "246642355 448626535535 246246246642 535646646 646117264335 448626535 555646646 646646 "
    "335535 555335535 335426462 404553662335 426426535 448626535535 426426426462 466466533 "
    "355535335 355535335555 448226335335 555535533 484262535535 555335533 422466555 555533 "
    "844622533 266355266533 717466353246 404266355 117624466335 355266448 555466466 466466 "
    "844666555555 535335555 242646555 555535 224664555 555335 555555 555 "
    "555 555555 555335 224664555 555535 242646555 535335555 844666555555 "
    "466466 555466466 355266448 117624466335 404266355 717466353246 266355266533 844622533 "
    "555533 422466555 555335533 484262535535 555535533 448226335335 355535335555 355535335 "
    "466466533 422466466466 448626535535 426426535 404553662335 335426462 555335535 335535 "
    "646646 555646646 448626535 646117264335 535646646 242646646646 448626535535 246642355 "
    "555666448 555555666448 448448 440662335 242177224355 335246642 448266355 246642 "
    "844262535 242711462355 262262353353 484262535 844226335335 335246246 555335355 335355 "
    "717422353664 426426335 448626535 426426 335224664 335335 555335 335 "
    "224224 555224224 224224335 224224224664 484662335 171224353246 484662335335 355624264 "
    "404222333 555404222333 111246333264 624264535 484404 484535262 484266533 624264 "
    "044226335 462711355664 844626353535 535624624 662662553335 448226335 555535355 355535 "
    "117466553242 426462535 535242646 535535 404553662 426462 555535 535 "
    "044333222 044333222555 777462333264 533624624 555777426246 246246533 422466355 355533 "
    "333222666555 335535533 440666333 535533 404666555 335533 422466 533 "
    "844844 044266355 844626353 624624 844226335 246246 555355 355 "
    "844666555 535335 242646 535 224664 335 555 444 "
)


@lru_cache(maxsize=1)
def _surfel_normals() -> np.ndarray:
    """Decode :data:`_NORMALS_X8` into a ``(256, 4, 3)`` float array, zero-padded per code."""
    codes = _NORMALS_X8.split()
    if len(codes) != 256:
        raise AssertionError(f"surfel table has {len(codes)} codes, expected 256")
    normals = np.zeros((256, 4, 3))
    for code, digits in enumerate(codes):
        values = (np.array([int(d) for d in digits], dtype=float) - 4.0) / 8.0
        normals[code, : len(values) // 3] = values.reshape(-1, 3)
    return normals


def _surface_area_table(spacing: Sequence[float]) -> np.ndarray:
    """Surfel area (mm^2) of each 3D neighbourhood code for voxel ``spacing`` (array order)."""
    s0, s1, s2 = spacing
    scaled = _surfel_normals() * np.array([s1 * s2, s0 * s2, s0 * s1])
    return np.linalg.norm(scaled, axis=-1).sum(axis=-1)


def _contour_length_table(spacing: Sequence[float]) -> np.ndarray:
    """Contour length (mm) of each 2D neighbourhood code for pixel ``spacing`` (array order).

    Bits 8, 4, 2, 1 are the top-left, top-right, bottom-left and bottom-right pixels. A corner
    (one pixel in or out) is cut by half a diagonal, an edge (two neighbours) by one pixel
    side, a saddle (two opposite pixels) by two half diagonals.
    """
    half_diagonal = 0.5 * math.hypot(spacing[0], spacing[1])
    table = np.zeros(16)
    for code in (0b0001, 0b0010, 0b0100, 0b1000, 0b1110, 0b1101, 0b1011, 0b0111):
        table[code] = half_diagonal
    table[[0b0011, 0b1100]] = spacing[1]  # a horizontal edge runs along the columns (x1)
    table[[0b0101, 0b1010]] = spacing[0]  # a vertical edge runs along the rows (x0)
    table[[0b0110, 0b1001]] = 2 * half_diagonal
    return table


# ---------------------------------------------------------------------------------------------
# Input checks


def _as_mask_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks as bool arrays of one shape (non-zero is foreground), or a clear error."""
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise LiteMedSAMError(
            f"The prediction and the ground truth differ in shape: {pred.shape} vs {gt.shape}."
        )
    for what, array in (("prediction", pred), ("ground truth", gt)):
        if not (array.dtype == bool or np.issubdtype(array.dtype, np.number)):
            raise LiteMedSAMError(f"The {what} mask must be numeric or bool, not {array.dtype}.")
    return pred != 0, gt != 0


def _check_spacing(spacing: Sequence[float], ndim: int) -> tuple[float, ...]:
    """The spacing as floats, one positive finite value per array axis, or a clear error."""
    try:
        values = np.asarray(spacing, dtype=float).ravel()
    except (TypeError, ValueError):
        values = np.array([])
    if values.size != ndim or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise LiteMedSAMError(
            f"The spacing must be {ndim} positive numbers in array axis order "
            f"({'z, y, x' if ndim == 3 else 'y, x'}), got {spacing!r}."
        )
    return tuple(float(v) for v in values)


# ---------------------------------------------------------------------------------------------
# Metrics


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice similarity coefficient ``2 |P & G| / (|P| + |G|)``.

    Args:
        pred: predicted mask, any shape; non-zero is foreground.
        gt: ground-truth mask, the same shape.

    Returns:
        A float in [0, 1]; 1.0 when both masks are empty, 0.0 when exactly one is.
    """
    pred, gt = _as_mask_pair(pred, gt)
    total = int(pred.sum()) + int(gt.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(pred, gt).sum()) / total


def _crop_to_union(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop both masks to their union's bounding box plus one empty voxel at each axis end.

    The extra voxel lets the 2x2(x2) neighbourhood codes see the far side of the objects; the
    near side is covered by the correlation's zero border.
    """
    union = pred | gt
    slices = []
    for axis in range(union.ndim):
        other_axes = tuple(a for a in range(union.ndim) if a != axis)
        present = np.flatnonzero(union.any(axis=other_axes))
        slices.append(slice(present[0], present[-1] + 1))
    pad = [(0, 1)] * union.ndim
    return (np.pad(pred[tuple(slices)], pad).astype(np.uint8),
            np.pad(gt[tuple(slices)], pad).astype(np.uint8))


def _surface(mask: np.ndarray, spacing: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Surface points of a (cropped, padded) uint8 mask and each point's area or length.

    Returns ``(border, area)``: a bool array on the corner lattice marking surface points, and
    the area (mm^2, 3D) or length (mm, 2D) of each point's surface element.
    """
    if mask.ndim == 3:
        kernel, full, table = _ENCODE_3D, 0b11111111, _surface_area_table(spacing)
    else:
        kernel, full, table = _ENCODE_2D, 0b1111, _contour_length_table(spacing)
    codes = ndimage.correlate(mask, kernel, mode="constant", cval=0)
    border = (codes != 0) & (codes != full)
    return border, table[codes]


def surface_distances(pred: np.ndarray, gt: np.ndarray,
                      spacing: Sequence[float]) -> dict[str, np.ndarray]:
    """Distances between the surfaces of two non-empty masks, with surface element sizes.

    Equivalent to DeepMind's ``compute_surface_distances(gt, pred, spacing)`` (unsorted).

    Args:
        pred: predicted 2D ``[y, x]`` or 3D ``[z, y, x]`` mask; non-zero is foreground.
        gt: ground-truth mask of the same shape.
        spacing: voxel size in mm, in array axis order (``(z, y, x)`` or ``(y, x)``).

    Returns:
        Dict of 1D float arrays: ``distances_gt_to_pred`` and ``surfel_areas_gt`` (one entry
        per ground-truth surface element), ``distances_pred_to_gt`` and ``surfel_areas_pred``.
        Distances are in mm; areas in mm^2 (3D) or lengths in mm (2D). A side whose other
        mask is empty has infinite distances.
    """
    pred, gt = _as_mask_pair(pred, gt)
    if pred.ndim not in (2, 3):
        raise LiteMedSAMError(f"Surface metrics need 2D or 3D masks, got shape {pred.shape}.")
    spacing = _check_spacing(spacing, pred.ndim)
    empty = np.array([])
    if not (pred.any() or gt.any()):
        return {"distances_gt_to_pred": empty, "surfel_areas_gt": empty,
                "distances_pred_to_gt": empty, "surfel_areas_pred": empty}
    pred_crop, gt_crop = _crop_to_union(pred, gt)
    border_pred, area_pred = _surface(pred_crop, spacing)
    border_gt, area_gt = _surface(gt_crop, spacing)

    def distance_to(border: np.ndarray) -> np.ndarray:
        if not border.any():
            return np.full(border.shape, np.inf)
        return ndimage.distance_transform_edt(~border, sampling=spacing)

    return {
        "distances_gt_to_pred": distance_to(border_pred)[border_gt],
        "surfel_areas_gt": area_gt[border_gt],
        "distances_pred_to_gt": distance_to(border_gt)[border_pred],
        "surfel_areas_pred": area_pred[border_pred],
    }


def normalized_surface_dice(pred: np.ndarray, gt: np.ndarray, spacing_zyx: Sequence[float],
                            tolerance_mm: float = 2.0) -> float:
    """Normalized surface Dice (NSD) at ``tolerance_mm``, as the CVPR24 challenge computes it.

    NSD = (area of the ground-truth surface within the tolerance of the predicted surface +
    area of the predicted surface within the tolerance of the ground-truth surface) / (total
    area of both surfaces).

    Args:
        pred: predicted mask, 3D ``[z, y, x]`` or 2D ``[y, x]``; non-zero is foreground.
        gt: ground-truth mask of the same shape.
        spacing_zyx: voxel size in mm in array axis order: ``(z, y, x)`` for 3D masks,
            ``(y, x)`` for 2D masks (use ``(1, 1)`` for images without physical spacing).
            Note that ``SimpleITK.Image.GetSpacing()`` is ``(x, y, z)``: reverse it.
        tolerance_mm: the distance (mm) up to which surfaces count as touching; >= 0.

    Returns:
        A float in [0, 1]; 1.0 when both masks are empty, 0.0 when exactly one is.
    """
    if (isinstance(tolerance_mm, bool) or not isinstance(tolerance_mm, numbers.Real)
            or not math.isfinite(tolerance_mm) or tolerance_mm < 0):
        raise LiteMedSAMError(f"The NSD tolerance must be a number >= 0 mm, got {tolerance_mm!r}.")
    result = surface_distances(pred, gt, spacing_zyx)
    area_gt, area_pred = result["surfel_areas_gt"], result["surfel_areas_pred"]
    total = area_gt.sum() + area_pred.sum()
    if area_gt.size == 0 and area_pred.size == 0:
        return 1.0
    if area_gt.size == 0 or area_pred.size == 0:
        return 0.0
    within = (area_gt[result["distances_gt_to_pred"] <= tolerance_mm].sum()
              + area_pred[result["distances_pred_to_gt"] <= tolerance_mm].sum())
    return float(within / total)


def per_label_metrics(pred_labels: np.ndarray, gt_labels: np.ndarray,
                      spacing: Sequence[float], tolerance_mm: float = 2.0, *,
                      labels: Sequence[int] | None = None) -> dict[int, dict[str, float]]:
    """DSC and NSD for each label of two labelmaps.

    Args:
        pred_labels: predicted integer labelmap, 3D ``[z, y, x]`` or 2D ``[y, x]``; 0 is
            background.
        gt_labels: ground-truth labelmap of the same shape.
        spacing: voxel size in mm in array axis order (``(z, y, x)`` or ``(y, x)``).
        tolerance_mm: NSD tolerance in mm.
        labels: the labels to score. Default: every non-zero label in either labelmap. The
            CVPR24 challenge scores the ground truth's labels only
            (``labels=np.unique(gt_labels)[1:]``) and averages them per case.

    Returns:
        ``{label: {"dsc": float, "nsd": float}}`` in ascending label order.
    """
    pred_labels = np.asarray(pred_labels)
    gt_labels = np.asarray(gt_labels)
    for what, array in (("prediction", pred_labels), ("ground truth", gt_labels)):
        if not (np.issubdtype(array.dtype, np.integer) or array.dtype == bool):
            raise LiteMedSAMError(
                f"The {what} labelmap must have an integer dtype, not {array.dtype}."
            )
    if pred_labels.shape != gt_labels.shape:
        raise LiteMedSAMError(
            f"The labelmaps differ in shape: prediction {pred_labels.shape}, ground truth "
            f"{gt_labels.shape}."
        )
    if labels is None:
        labels = np.union1d(np.unique(pred_labels), np.unique(gt_labels))
        labels = labels[labels != 0]
    results: dict[int, dict[str, float]] = {}
    for label in sorted(int(v) for v in labels):
        pred_mask, gt_mask = pred_labels == label, gt_labels == label
        results[label] = {
            "dsc": dice(pred_mask, gt_mask),
            "nsd": normalized_surface_dice(pred_mask, gt_mask, spacing, tolerance_mm),
        }
    return results


def pair_segments(pred: Sequence[tuple[int, str | None]], truth: Sequence[tuple[int, str | None]],
                  pairs: Sequence[tuple[int, int]] | None = None) -> tuple[list[tuple[int, int]], str]:
    """Which prediction label is scored against which ground-truth label.

    Args:
        pred, truth: ``(label, name or None)`` of each structure of the two files.
        pairs: explicit ``(prediction label, ground-truth label)`` pairs; they override the rest.

    Returns:
        ``(pairs, how)``. Without explicit pairs: by name (case-insensitive) when both sides
        name their structures and at least one name matches, else by equal label value.
        ``how`` is ``"--pair"``, ``"name"`` or ``"label value"``.
    """
    pred_labels, truth_labels = [p[0] for p in pred], [t[0] for t in truth]
    if pairs:
        for what, label, known in [("prediction", p, pred_labels) for p, _ in pairs] + \
                                  [("ground truth", t, truth_labels) for _, t in pairs]:
            if label not in known:
                raise LiteMedSAMError(f"--pair names {what} label {label}, which is not in the {what} file "
                                      f"(it has {', '.join(map(str, known)) or 'no labels'})")
        return [(int(p), int(t)) for p, t in pairs], "--pair"

    def key(name: str | None) -> str | None:
        return name.strip().casefold() if name else None

    truth_by_name = {key(n): label for label, n in truth if key(n)}
    by_name = [(p, truth_by_name[key(n)]) for p, n in pred if key(n) in truth_by_name]
    if by_name:
        return by_name, "name"
    return [(p, p) for p in pred_labels if p in truth_labels], "label value"


def evaluate_files(pred_path: str | Path, gt_path: str | Path, tolerance_mm: float = 2.0,
                   pairs: Sequence[tuple[int, int]] | None = None) -> dict:
    """DSC and NSD of each prediction structure against the ground-truth structure it pairs
    with (:func:`pair_segments`): by name for two ``.seg.nrrd`` that name them alike, else by
    label value, or as ``pairs`` says.

    Returns a JSON-ready dict: ``paired_by``; ``labels`` keyed by ground-truth label (as
    text) with ``dsc``, ``nsd``, the ``prediction`` label paired with it and the names;
    ``unmatched_prediction`` and ``unmatched_ground_truth`` (labels that were not compared);
    ``mean`` DSC and NSD over the compared pairs (``over``: how many). The CVPR24 challenge
    scores a ground-truth label the prediction misses as 0; here it is reported as unmatched
    instead, so that a result for some structures is not averaged with those it never had.
    """
    from ..imageio import read_segments

    pred, pred_spacing = read_segments(pred_path)
    truth, gt_spacing = read_segments(gt_path)
    if pred and truth and pred[0][2].shape != truth[0][2].shape:
        raise LiteMedSAMError(f"prediction {pred[0][2].shape} and ground truth {truth[0][2].shape} (z, y, x) "
                              "are not on the same voxel grid")
    if not np.allclose(pred_spacing, gt_spacing, rtol=1e-4):
        raise LiteMedSAMError(f"prediction spacing {pred_spacing} differs from ground truth {gt_spacing}")
    if not truth:
        raise LiteMedSAMError(f"the ground truth {gt_path} has no labelled voxels")
    if not pred:
        raise LiteMedSAMError(f"the prediction {pred_path} has no labelled voxels or segments")
    matched, how = pair_segments([(lab, name) for lab, name, _ in pred],
                                 [(lab, name) for lab, name, _ in truth], pairs)
    pred_by_label = {lab: (name, mask) for lab, name, mask in pred}
    truth_by_label = {lab: (name, mask) for lab, name, mask in truth}
    results: dict[str, dict] = {}
    for p, t in sorted(matched, key=lambda pair: pair[1]):
        (p_name, p_mask), (t_name, t_mask) = pred_by_label[p], truth_by_label[t]
        results[str(t)] = {"dsc": dice(p_mask, t_mask),
                           "nsd": normalized_surface_dice(p_mask, t_mask, gt_spacing, tolerance_mm),
                           "prediction": p, "prediction_name": p_name, "name": t_name}
    used_pred, used_truth = {p for p, _ in matched}, {t for _, t in matched}
    return {"tolerance_mm": tolerance_mm, "paired_by": how, "labels": results,
            "unmatched_prediction": [lab for lab in pred_by_label if lab not in used_pred],
            "unmatched_ground_truth": [lab for lab in truth_by_label if lab not in used_truth],
            "mean": {"dsc": float(np.mean([r["dsc"] for r in results.values()])) if results else None,
                     "nsd": float(np.mean([r["nsd"] for r in results.values()])) if results else None,
                     "over": len(results)}}
