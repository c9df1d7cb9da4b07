"""Simulated clicks: the interactive-segmentation protocol of the CVPR 2025 follow-up challenge.

"Foundation Models for Interactive 3D Biomedical Image Segmentation" (CVPR 2025) scores a
model by prompting it with the bounding box of the reference label, then with up to five
clicks, each placed at the centre of the largest error region of the current result: the
largest 3D connected component of the voxels where prediction and reference disagree; its
centre is the voxel farthest (Euclidean distance transform, in millimetres) from the
component's border. A missed voxel gives a positive click, a wrong one a negative click.
DSC and NSD are recorded after the box and after each click; :func:`click_auc` is the
challenge's DSC_AUC / NSD_AUC (area under the score-vs-click curve over the click steps only,
trapezoid rule with unit spacing: the box step is optional in the challenge, so it is left out).

:func:`evaluate_clicks` runs that protocol on one label with a :class:`RefinementSession`.
With ``scribbles=True`` each click becomes a stroke instead (:func:`scribble_through`): a
straight line through the click along the long axis of the error region under it on its slice,
as far as it stays inside that region; the challenge has no scribble protocol, so this one is
ours, made the way a user marks an elongated missed part or leak.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..boxes import Box3D
from ..errors import LiteMedSAMError
from ..predictor import VolumePredictor
from ..refinement import RefinementSession
from .metrics import dice, normalized_surface_dice
from .statistics import paired_difference


@dataclass(frozen=True)
class Click:
    """A simulated click at voxel ``(z, y, x)``; ``positive`` when it marks missed object."""

    z: int
    y: int
    x: int
    positive: bool


def next_click(pred: np.ndarray, gt: np.ndarray, spacing_zyx: Sequence[float] = (1.0, 1.0, 1.0)) -> Click | None:
    """The click at the centre of the largest error region of ``pred`` against ``gt``.

    Returns ``None`` when they agree everywhere. Components are 26-connected (as the
    challenge's ``cc3d`` default); the centre is the argmax of the Euclidean distance
    transform (with ``spacing_zyx``) of the component inside its padded bounding box, so a
    click never falls outside the component even for a C-shaped one.
    """
    pred, gt = np.asarray(pred) > 0, np.asarray(gt) > 0
    if pred.shape != gt.shape:
        raise LiteMedSAMError(f"prediction {pred.shape} and reference {gt.shape} differ in shape")
    error = pred ^ gt
    if not error.any():
        return None
    labels, _ = ndimage.label(error, structure=np.ones((3,) * error.ndim, dtype=bool))
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    largest = int(np.argmax(sizes))
    bbox = ndimage.find_objects((labels == largest).astype(np.uint8))[0]
    lo = [max(0, s.start - 1) for s in bbox]
    hi = [min(n, s.stop + 1) for s, n in zip(bbox, labels.shape)]
    window = tuple(slice(a, b) for a, b in zip(lo, hi))
    component = np.pad(labels[window] == largest, 1)  # the border of the image is a border too
    distance = ndimage.distance_transform_edt(component, sampling=tuple(float(s) for s in spacing_zyx))
    z, y, x = (int(i) - 1 + a for i, a in zip(np.unravel_index(np.argmax(distance), distance.shape), lo))
    return Click(z, y, x, bool(gt[z, y, x]))


@dataclass
class ClickStep:
    """Scores after the box (``click is None``) or after one click."""

    click: Click | None
    dsc: float
    nsd: float
    changed_slices: int
    slice_seconds: float | None = None  # the clicked slice's correction alone (what a viewer shows first)
    click_seconds: float | None = None  # the whole click: the clicked slice and its re-propagation
    # voxels that became right minus voxels that became wrong: on the clicked slice (its own
    # correction), on the slices re-propagated from it, and what a perfect correction of just the
    # error region under the click, on its slice, would have gained (the clicked slice's bound)
    clicked_gain: int | None = None
    propagated_gain: int | None = None
    local_bound: int | None = None

    def as_dict(self) -> dict:
        click = None if self.click is None else {"z": self.click.z, "y": self.click.y, "x": self.click.x,
                                                 "positive": self.click.positive}
        return {"click": click, "dsc": self.dsc, "nsd": self.nsd, "changed_slices": self.changed_slices,
                "slice_seconds": self.slice_seconds, "click_seconds": self.click_seconds,
                "clicked_gain": self.clicked_gain,
                "propagated_gain": self.propagated_gain, "local_bound": self.local_bound}


def _right(mask: np.ndarray, gt: np.ndarray) -> int:
    return int(np.count_nonzero((np.asarray(mask) > 0) == gt))


def error_region(mask_slice: np.ndarray, gt_slice: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """The 8-connected regions of a slice where ``mask_slice`` and ``gt_slice`` disagree that hold
    any of ``pixels`` ``(N, 2)`` (x, y): what a click (or scribble) there points at."""
    error = (np.asarray(mask_slice) > 0) ^ (np.asarray(gt_slice) > 0)
    labels, _ = ndimage.label(error, structure=np.ones((3, 3), dtype=bool))
    under = np.unique(labels[pixels[:, 1], pixels[:, 0]])
    return np.isin(labels, under[under > 0])


def local_bound(mask_slice: np.ndarray, gt_slice: np.ndarray, x: int, y: int) -> int:
    """Voxels a perfect correction of one click would gain on its slice: the size of the
    :func:`error_region` under pixel (x, y) (0 when mask and reference agree there). What a click
    decoder could at best do there without touching anything away from the click."""
    return int(np.count_nonzero(error_region(mask_slice, gt_slice, np.array([[x, y]]))))


def long_axis(region: np.ndarray) -> np.ndarray:
    """The unit direction (dx, dy) along which ``region``'s pixels spread most (the principal
    axis: the eigenvector of their covariance with the largest eigenvalue); (1, 0) where that
    is undefined."""
    ys, xs = np.nonzero(region)
    cov = np.cov(np.stack([xs, ys]).astype(np.float64))
    return np.linalg.eigh(cov)[1][:, -1] if np.all(np.isfinite(cov)) else np.array([1.0, 0.0])


def stroke_along(region: np.ndarray, x: int, y: int, direction: np.ndarray, limit: int) -> np.ndarray:
    """A straight stroke through pixel (x, y) along ``direction`` (dx, dy), out to both sides in
    unit steps, at most ``limit`` of them each way and only while it stays inside ``region``:
    ``(N, 2)`` (x, y) pixels in drawing order, consecutive repeats dropped. The geometry of the
    evaluation's strokes (:func:`scribble_through`) and of the click decoder's training strokes."""
    sides = {}
    for sign in (1, -1):
        line, px, py = [], float(x), float(y)
        for _ in range(limit):
            px, py = px + sign * direction[0], py + sign * direction[1]
            ix, iy = int(round(px)), int(round(py))
            if not (0 <= iy < region.shape[0] and 0 <= ix < region.shape[1]) or not region[iy, ix]:
                break
            line.append([ix, iy])
        sides[sign] = line
    pixels = np.array(sides[-1][::-1] + [[x, y]] + sides[1], dtype=np.int64)
    keep = np.ones(len(pixels), dtype=bool)
    keep[1:] = np.any(pixels[1:] != pixels[:-1], axis=1)
    return pixels[keep]


def scribble_through(region: np.ndarray, x: int, y: int) -> np.ndarray:
    """A straight stroke through pixel (x, y) of ``region`` (a slice's error region) along its
    :func:`long_axis`, from the click out to both ends as far as the line stays inside the
    region (:func:`stroke_along`): ``(N, 2)`` (x, y) pixels in drawing order, (x, y) among them;
    the click alone where the region has fewer than 3 pixels."""
    region = np.asarray(region, dtype=bool)
    if np.count_nonzero(region) < 3 or not region[y, x]:
        return np.array([[x, y]])
    return stroke_along(region, x, y, long_axis(region), region.shape[0] + region.shape[1] - 1)


def click_auc(scores: Sequence[float]) -> float:
    """DSC_AUC / NSD_AUC of the CVPR 2025 challenge from the scores after the box and each click:
    the trapezoid area under the scores of the click steps (``scores[1:]``) against the click
    index (unit spacing; 5 clicks give at most 4). 0 with fewer than two clicks."""
    clicks = np.asarray(scores[1:], dtype=np.float64)
    return float(np.sum((clicks[1:] + clicks[:-1]) / 2)) if len(clicks) >= 2 else 0.0


def evaluate_clicks(predictor: VolumePredictor, gt: np.ndarray, clicks: int = 5,
                    spacing_zyx: Sequence[float] = (1.0, 1.0, 1.0), tolerance_mm: float = 2.0,
                    correction: str | None = None, mask_prompt: bool = True,
                    on_step: Callable[[ClickStep], None] | None = None, pipeline=None,
                    edge_cut: bool = True,
                    session_class: type[RefinementSession] = RefinementSession,
                    scribbles: bool = False) -> list[ClickStep]:
    """Box from ``gt``'s bounding box, then up to ``clicks`` simulated clicks.

    Args:
        predictor: a predictor with the image set (``[z, y, x]``, same shape as ``gt``).
        gt: the reference mask of one object (non-zero inside).
        clicks: how many clicks after the box (the protocol stops early when nothing is wrong).
        spacing_zyx: voxel size in mm, for click centres and NSD.
        tolerance_mm: NSD tolerance.
        correction, mask_prompt, pipeline, edge_cut: see :class:`RefinementSession` (``correction=None``:
            its default, the trained click decoder when the model has one).
        on_step: called with each :class:`ClickStep` as it is scored.
        session_class: the session that corrects (a subclass measures another correction rule,
            e.g. ``tools/eval_click_decoder.py``'s perfect local correction).
        scribbles: give each interaction as a stroke through the click (:func:`scribble_through`
            in the error region under it on its slice) instead of the click.
    Returns:
        ``1 + n`` steps: after the box, then after each click given.
    """
    gt = np.asarray(gt) > 0
    if gt.shape != predictor.shape:
        raise LiteMedSAMError(f"the reference label {gt.shape} and the image {predictor.shape} differ in shape")
    if clicks < 0:
        raise LiteMedSAMError(f"the number of clicks must be 0 or more, got {clicks}")
    session = session_class(predictor, Box3D.from_mask(gt), correction=correction,
                            mask_prompt=mask_prompt, pipeline=pipeline, edge_cut=edge_cut)
    session.run()
    steps: list[ClickStep] = []

    def score(mask: np.ndarray, click: Click | None, changed: int,
              seconds: tuple[float | None, float | None] = (None, None),
              gains: tuple[int, int, int] = (None, None, None)) -> None:
        step = ClickStep(click, dice(mask, gt), normalized_surface_dice(mask, gt, spacing_zyx, tolerance_mm),
                         changed, seconds[0], seconds[1], *gains)
        steps.append(step)
        if on_step is not None:
            on_step(step)

    mask = session.mask
    score(mask, None, len(session.box.z_range))
    for _ in range(clicks):
        click = next_click(mask, gt, spacing_zyx)
        if click is None:
            break
        z = click.z
        session.defer_propagation = True  # as the Slicer module: the clicked slice first
        start = time.perf_counter()
        if scribbles:
            region = error_region(mask[z], gt[z], np.array([[click.x, click.y]]))
            stroke = scribble_through(region, click.x, click.y)
            changed = session.add_scribble(z, stroke, click.positive)
        else:
            changed = session.add_point(z, click.x, click.y, click.positive)
        seconds = time.perf_counter() - start
        clicked = session.slice_mask(z).copy()  # deferred: the clicked slice is all that changed yet
        session.defer_propagation = False
        changed = sorted(set(changed) | set(session.propagate_pending()))
        total = time.perf_counter() - start
        after = session.mask
        clicked_gain = _right(clicked, gt[z]) - _right(mask[z], gt[z])
        gains = (clicked_gain, _right(after, gt) - _right(mask, gt) - clicked_gain,
                 local_bound(mask[z], gt[z], click.x, click.y))
        score(after, click, len(changed), (seconds, total), gains)
        mask = after
    return steps


def click_steps(dsc_rows: Sequence[Sequence[float]]) -> list[dict]:
    """Each click against the step before it, paired over the rows (one per structure: DSC
    after the box, then after each click): the mean change, how many rose and fell and, from 5
    rows on, an interval (:func:`~LiteMedSAMLib.evaluation.statistics.paired_difference`), not
    only whether the mean rose."""
    if not dsc_rows:
        return []
    return [paired_difference([r[k] for r in dsc_rows], [r[k - 1] for r in dsc_rows]).as_dict()
            for k in range(1, len(dsc_rows[0]))]


def evaluate_clicks_files(image_path: str | Path, gt_path: str | Path, *, clicks: int = 5,
                          labels: Sequence[int] | None = None, model_name: str | None = None,
                          weights: str | None = None, preset: str = "auto",
                          window: tuple[float, float] | None = None, mode: str | None = None,
                          threads: int | None = None, tolerance_mm: float = 2.0,
                          correction: str | None = None, mask_prompt: bool = True,
                          on_step=None, pipeline=None, edge_cut: bool = True,
                          scribbles: bool = False) -> dict:
    """The simulated-click protocol (:mod:`LiteMedSAMLib.clicks`) for each label of ``gt_path``
    (``scribbles``: each click given as a stroke through it, :func:`scribble_through`).

    Returns a JSON-ready dict: per label the steps (after the box, then each click) with DSC,
    NSD, the click and how many slices changed; ``mean`` holds the mean DSC and NSD per step
    over labels (a label that became perfect early keeps its last scores); ``auc`` the
    challenge's DSC_AUC and NSD_AUC (:func:`click_auc`) per label and their means;
    ``click_steps`` each click's DSC change over the step before it, paired over labels
    (:func:`~LiteMedSAMLib.evaluation.statistics.paired_difference`: the mean change, how many
    labels rose and fell, an interval from 5 labels on).
    """
    import SimpleITK as sitk

    from ..backends import DEFAULT_MODE, make_predictor
    from ..imageio import check_image, read_image, read_label_volume
    from ..pipeline import get_pipeline
    from ..registry import load_model

    image = read_image(image_path)
    info = check_image(image)
    if info.dimension != 3:
        raise LiteMedSAMError(f"evaluate-clicks needs a 3D image; {image_path} is {info.dimension}D")
    gt, spacing = read_label_volume(gt_path)
    array = sitk.GetArrayFromImage(image)
    if gt.shape != array.shape[:3]:
        raise LiteMedSAMError(f"the label {gt_path} {gt.shape} and the image {array.shape[:3]} (z, y, x) "
                              "are not on the same voxel grid")
    present = [int(v) for v in np.unique(gt) if v != 0]
    if not present:
        raise LiteMedSAMError(f"the label file {gt_path} has no labelled voxels")
    if labels:
        missing = sorted(set(labels) - set(present))
        if missing:
            raise LiteMedSAMError(f"label(s) {missing} not in {gt_path}; it has {present}")
        present = [int(v) for v in labels]
    predictor = make_predictor(load_model(model_name, weights), mode or DEFAULT_MODE, threads=threads)
    predictor.set_volume(array, preset=preset, window=window, slice_spacing=float(spacing[0]))
    if correction is None:
        from ..click_decoder import default_correction

        correction = default_correction(predictor)
    results = {}
    for label in present:
        steps = evaluate_clicks(predictor, gt == label, clicks, spacing, tolerance_mm,
                                correction=correction, mask_prompt=mask_prompt, pipeline=pipeline,
                                edge_cut=edge_cut, scribbles=scribbles,
                                on_step=None if on_step is None else (lambda s, lab=label: on_step(lab, s)))
        results[str(label)] = [step.as_dict() for step in steps]
    n = clicks + 1
    padded = {key: [[r[min(i, len(r) - 1)][key] for i in range(n)] for r in results.values()]
              for key in ("dsc", "nsd")}
    auc = {label: {f"{key}_auc": click_auc([padded[key][i][j] for j in range(n)]) for key in ("dsc", "nsd")}
           for i, label in enumerate(results)}
    auc_mean = {f"{key}_auc": float(np.mean([a[f"{key}_auc"] for a in auc.values()])) for key in ("dsc", "nsd")}
    return {"image": str(image_path), "ground_truth": str(gt_path), "clicks": clicks,
            "correction": correction, "mask_prompt": mask_prompt, "edge_cut": edge_cut, "scribbles": scribbles,
            "pipeline": get_pipeline(pipeline).name, "tolerance_mm": tolerance_mm,
            "mode": predictor.mode, "preset": predictor.mapping.kind, "labels": results,
            "mean": {key: [float(np.mean(col)) for col in zip(*rows)] for key, rows in padded.items()},
            "auc": {"labels": auc, "mean": auc_mean}, "click_steps": click_steps(padded["dsc"])}
