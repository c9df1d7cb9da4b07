"""Could the tool tell a user that their box cut the object? A hint measured, and not shipped.

    python tools/study_box_contact.py --split train              # the labels as masks
    python tools/study_box_contact.py --split train --model-ends # the model's 3D sweeps
    python tools/study_box_contact.py --split train --model      # the model's start slices

The default pipeline keeps a box's masks inside the box the user drew (lever ``bound``), and no
pipeline sweeps past a 3D box's first and last slices, so an object larger than its box is cut
off without a sign. The rule studied here (:func:`box_contact`) says a box may have cut its
object where the mask lies along a side of the box (at least half the side covered, and at
least ``TAPER`` of the line ``INSIDE`` pixels further in: a cut leaves the edge as wide as the
object there, a whole object tapers towards its box) or still fills the box's first or last
slice (half the largest slice's area, ``TAPER`` of its inner neighbour's; not at the volume's
own ends). For every structure the suite picks (3D bounding-box rule, up to
``--max-structures`` per case) it is scored

- on the *label* standing in for a perfect model's mask (default): in its own tight box (a hint
  is a false alarm), with one in-slice side moved inwards by ``--cut`` of its extent (each of the
  four in turn) and the label clipped to it, as the default clips (a side hint is wanted), and
  with its last, then first slice moved inwards (an end hint is wanted);
- on the *model's* masks (``--model-ends``): each structure of a 3-D volume swept with
  ``--pipeline`` in its tight 3D box and in the boxes cut at either end;
- on the *model's* sweep past the box (``--model-beyond``): the tight and the end-cut boxes
  swept one slice longer at each end with the stop rule; a mask on an added slice would say the
  object goes on there;
- on the *model's* masks of the start slice (``--model``): each structure's middle slice (its 2D
  box there, as ``evaluate-suite --start box2d`` draws it) segmented as a one-slice box, tight
  and with each side moved inwards, the label clipped the same way scored beside it (boxes
  narrower than ``MIN_SIDE`` pixels either way are left out: none of their sides is judged).

On the labels the rule works (README, *Accuracy*: about 7% false alarms, 58-68% of side cuts
and 61-71% of end cuts found); on the model's masks it does not: LiteMedSAM segments the part
of an object inside a box that cuts it as a whole object, away from the cut side (4% of side
cuts found), and its swept masks do not taper towards a tight box's ends (60% false alarms on
the train split's fitting boxes); nor does its sweep past the box (65% false alarms, 5 per
case). So nothing in the library, the command line or Slicer warns.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from LiteMedSAMLib.boxes import Box3D, SliceBox  # noqa: E402
from LiteMedSAMLib.evaluation import suite  # noqa: E402

# A side counts as lying along the mask when the mask covers at least this share of it
SIDE_SHARE = 0.5
# An end slice counts as cutting the object when its mask has at least this share of the area
# of the mask's largest slice
END_SHARE = 0.5
# ... and covers about as much of it as of the line INSIDE pixels further in: a cut leaves
# the edge as wide as the object's section there, a whole object tapers towards its edge
# (likewise an end slice against its inner neighbour)
TAPER = 0.9
INSIDE = 2
# Sides shorter than this (pixels) are not judged: a few pixels are covered by any mask
MIN_SIDE = 8


@dataclass(frozen=True)
class BoxContact:
    """Where a mask reaches its box's edges: slices whose mask lies along a side of the box,
    and whether the box's first / last slice still holds much of the object."""

    side_slices: tuple[int, ...] = ()
    cut_below: bool = False  # the first slice of the box (lowest z) is full
    cut_above: bool = False  # the last slice of the box (highest z) is full

    def __bool__(self) -> bool:
        return bool(self.side_slices) or self.cut_below or self.cut_above


def _lying_along_a_side(plane: np.ndarray, box2d: tuple[int, int, int, int], shape_yx) -> bool:
    """Whether ``plane`` covers at least :data:`SIDE_SHARE` of one of the box's sides (sides on
    the image's border are not judged: there the image cuts the object, not the box)."""
    x0, y0, x1, y1 = box2d
    h, w = shape_yx
    sides = []  # (the side, the line INSIDE pixels in from it)
    if x1 - x0 + 1 >= MIN_SIDE and y1 - y0 >= 2 * INSIDE:
        if y0 > 0:
            sides.append((plane[y0, x0:x1 + 1], plane[y0 + INSIDE, x0:x1 + 1]))
        if y1 < h - 1:
            sides.append((plane[y1, x0:x1 + 1], plane[y1 - INSIDE, x0:x1 + 1]))
    if y1 - y0 + 1 >= MIN_SIDE and x1 - x0 >= 2 * INSIDE:
        if x0 > 0:
            sides.append((plane[y0:y1 + 1, x0], plane[y0:y1 + 1, x0 + INSIDE]))
        if x1 < w - 1:
            sides.append((plane[y0:y1 + 1, x1], plane[y0:y1 + 1, x1 - INSIDE]))
    return any(side.mean() >= SIDE_SHARE and side.sum() >= TAPER * inner.sum() for side, inner in sides)


def box_contact(mask: np.ndarray, box: Box3D | SliceBox) -> BoxContact:
    """Where ``mask`` (``[z, y, x]``, the result for ``box``) reaches the box's edges.

    Sides are judged on every slice of a 3D box and on a 2D box's own slice (elsewhere a 2D box
    does not say where the object lies). The end slices are judged for a 3D box and for a 2D
    box's allowed slice range (``z_min`` / ``z_max``), except where they are the volume's own.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim == 2:
        mask = mask[None]
    nz = mask.shape[0]
    shape_yx = mask.shape[1:]
    if isinstance(box, SliceBox):
        judged = [box.z]
        allowed = box.bounds(nz)
        z0, z1 = allowed.z0, allowed.z1
    else:
        judged = list(box.z_range)
        z0, z1 = box.z0, box.z1
    sides = tuple(int(z) for z in judged if mask[z].any() and _lying_along_a_side(mask[z], box.box2d, shape_yx))
    areas = mask[z0:z1 + 1].sum(axis=(1, 2))
    largest = areas.max() if areas.size else 0
    if largest == 0 or z1 == z0:
        return BoxContact(sides)
    cut_below = z0 > 0 and areas[0] >= END_SHARE * largest and areas[0] >= TAPER * areas[1]
    cut_above = z1 < nz - 1 and areas[-1] >= END_SHARE * largest and areas[-1] >= TAPER * areas[-2]
    return BoxContact(sides, bool(cut_below), bool(cut_above))


def clipped(mask: np.ndarray, box: Box3D) -> np.ndarray:
    """``mask`` with everything outside ``box`` taken away, as the default's bound does."""
    inside = np.zeros_like(mask)
    inside[box.z0:box.z1 + 1, box.y0:box.y1 + 1, box.x0:box.x1 + 1] = \
        mask[box.z0:box.z1 + 1, box.y0:box.y1 + 1, box.x0:box.x1 + 1]
    return inside


def side_cuts(box: Box3D, share: float) -> list[Box3D]:
    """The box with each in-slice side moved inwards by ``share`` of its extent (>= 1 pixel)."""
    dx = max(1, round(share * (box.x1 - box.x0 + 1)))
    dy = max(1, round(share * (box.y1 - box.y0 + 1)))
    x0, y0, z0, x1, y1, z1 = box.as_tuple()
    return [Box3D(x0 + dx, y0, z0, x1, y1, z1), Box3D(x0, y0, z0, x1 - dx, y1, z1),
            Box3D(x0, y0 + dy, z0, x1, y1, z1), Box3D(x0, y0, z0, x1, y1 - dy, z1)]


def end_cuts(box: Box3D, share: float) -> list[tuple[Box3D, str]]:
    """The box with its last, then its first slice moved inwards by ``share`` of its slice
    extent (>= 1 slice), each with the end it cuts; none for a box too thin to cut."""
    if box.z1 == box.z0:
        return []
    dz = max(1, round(share * (box.z1 - box.z0 + 1)))
    if box.z1 - dz < box.z0:
        return []
    x0, y0, z0, x1, y1, z1 = box.as_tuple()
    return [(Box3D(x0, y0, z0, x1, y1, z1 - dz), "cut_above"), (Box3D(x0, y0, z0 + dz, x1, y1, z1), "cut_below")]


def _segmented(args, build, *, volumes_only: bool, pipeline: str):
    """The model's masks for the boxes ``build(picked)`` makes of each case's structures: yields
    ``(case, masks, boxes, tags)`` per case (3-D volumes only with ``volumes_only``), each case's
    boxes segmented in one call with ``pipeline``, one predictor kept across cases."""
    from LiteMedSAMLib.segmentation import segment_image

    predictor = None
    for case in suite.read_index(args.data_dir, split=args.split):
        if volumes_only and case.dimension != 3:
            continue
        picked = suite.case_structures(case, max_structures=args.max_structures)
        boxes, tags = build(picked)
        if not boxes:
            continue
        masks, predictor = segment_image(picked.loaded.image, boxes, preset=picked.preset,
                                         pipeline=pipeline, predictor=predictor, threads=2)
        yield case, masks, boxes, tags


def model_sides(args) -> None:
    """Side hints on the model's masks of each structure's middle slice (see the docstring)."""

    def build(picked):
        label = picked.loaded.label if picked.loaded.label.ndim == 3 else picked.loaded.label[None]
        boxes, truths = [], []
        for s in picked.structures:
            z, x0, y0, x1, y1 = suite.middle_slice_box(label == s.value)
            if min(x1 - x0, y1 - y0) + 1 < MIN_SIDE:
                continue  # no side of it is judged
            tight = Box3D(x0, y0, z, x1, y1, z)
            truth = np.zeros_like(label, dtype=np.uint8)
            truth[z] = label[z] == s.value
            boxes += [tight, *side_cuts(tight, args.cut)]
            truths += [truth] * 5
        return boxes, truths

    counts: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for case, masks, boxes, truths in _segmented(args, build, volumes_only=False, pipeline=args.pipeline):
        row = counts[case.dataset]
        for i, (mask, box, truth) in enumerate(zip(masks, boxes, truths)):
            mask = mask if mask.ndim == 3 else mask[None]
            kind = "fits" if i % 5 == 0 else "side cut"
            row[f"{kind}: model"].append(bool(box_contact(mask, box).side_slices))
            row[f"{kind}: label"].append(bool(box_contact(clipped(truth, box), box).side_slices))
        print(f"{case.case_id}: {len(boxes) // 5} structures", flush=True)
    _table(counts, ["fits: model", "fits: label", "side cut: model", "side cut: label"])


def model_ends(args) -> None:
    """End hints on the model's masks: each 3-D structure swept in its tight 3D box and in the
    box with its last, then its first slice moved inwards by ``--cut`` of its slice extent."""

    def build(picked):
        boxes, kinds = [], []
        for s in picked.structures:
            tight = Box3D(*s.box)
            cuts = end_cuts(tight, args.cut)
            if not cuts:
                continue
            boxes += [tight] + [cut for cut, _ in cuts]
            kinds += ["fits"] + [end for _, end in cuts]
        return boxes, kinds

    counts: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for case, masks, boxes, kinds in _segmented(args, build, volumes_only=True, pipeline=args.pipeline):
        row = counts[case.dataset]
        for mask, box, kind in zip(masks, boxes, kinds):
            contact = box_contact(mask, box)
            if kind == "fits":
                row["fits: end hint"].append(contact.cut_below or contact.cut_above)
                row["fits: any hint"].append(bool(contact))
            else:
                row["end cut: end hint"].append(getattr(contact, kind))
        print(f"{case.case_id}: {kinds.count('fits')} structures", flush=True)
    _table(counts, ["fits: any hint", "fits: end hint", "end cut: end hint"])


def model_beyond(args) -> None:
    """Does the default's sweep find the object past a box's ends? Each 3-D structure's tight
    box, and the box with its last (then first) slice moved inwards by ``--cut``, are swept
    one slice longer at each end (within the volume) with ``--pipeline`` plus the stop rule (a
    3D box's sweep has none by default): a mask on an added slice says the object goes on there."""

    def build(picked):
        nz = picked.loaded.label.shape[0]
        boxes, kinds = [], []
        for s in picked.structures:
            tight = Box3D(*s.box)
            for box, kind in [(tight, "fits")] + end_cuts(tight, args.cut):
                x0, y0, z0, x1, y1, z1 = box.as_tuple()
                boxes.append(Box3D(x0, y0, max(0, z0 - 1), x1, y1, min(nz - 1, z1 + 1)))
                kinds.append((kind, z0 - 1 if z0 > 0 else None, z1 + 1 if z1 < nz - 1 else None))
        return boxes, kinds

    counts: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for case, masks, _, kinds in _segmented(args, build, volumes_only=True, pipeline=f"{args.pipeline}+stop"):
        row = counts[case.dataset]
        for mask, (kind, below, above) in zip(masks, kinds):
            found_below = below is not None and bool(mask[below].any())
            found_above = above is not None and bool(mask[above].any())
            if kind == "fits":
                row["fits: found past an end"].append(found_below or found_above)
            else:
                row["end cut: found past it"].append(found_above if kind == "cut_above" else found_below)
        print(f"{case.case_id}: {sum(k[0] == 'fits' for k in kinds)} structures", flush=True)
    _table(counts, ["fits: found past an end", "end cut: found past it"])


def _table(counts, columns) -> None:
    """Per dataset and over all: the share of hints in each column (and how many were judged)."""
    def line(name: str, row) -> str:
        cells = (f"{np.mean(row[c]):.2f} ({len(row[c])})" if row[c] else "-" for c in columns)
        return f"{name:24s}" + "".join(f"{cell:>22s}" for cell in cells)

    print(f"\n{'dataset':24s}" + "".join(f"{c:>22s}" for c in columns))
    total: dict[str, list[bool]] = defaultdict(list)
    for dataset, row in counts.items():
        for c in columns:
            total[c].extend(row[c])
        print(line(dataset, row))
    print(line("all", total))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="test", choices=("train", "test", "all"))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--max-structures", type=int, default=suite.DEFAULT_MAX_STRUCTURES)
    parser.add_argument("--cut", type=float, default=0.25, help="share of the extent a cut removes")
    parser.add_argument("--model", action="store_true", help="score the model's masks (sides, middle slices)")
    parser.add_argument("--model-ends", action="store_true", help="score the model's masks (ends, 3D sweeps)")
    parser.add_argument("--model-beyond", action="store_true",
                        help="sweep each box one slice longer at each end: is the object found there?")
    parser.add_argument("--pipeline", default="default",
                        help="with --model, --model-ends, --model-beyond: the pipeline (default: default)")
    args = parser.parse_args()
    if args.model:
        model_sides(args)
        return
    if args.model_ends:
        model_ends(args)
        return
    if args.model_beyond:
        model_beyond(args)
        return

    counts: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for case in suite.read_index(args.data_dir, split=args.split):
        picked = suite.case_structures(case, max_structures=args.max_structures)
        label = picked.loaded.label if picked.loaded.label.ndim == 3 else picked.loaded.label[None]
        for s in picked.structures:
            truth = (label == s.value).astype(np.uint8)
            box = Box3D(*s.box)
            row = counts[case.dataset]
            fit = box_contact(truth, box)
            row["fits: any hint"].append(bool(fit))
            row["fits: side"].append(bool(fit.side_slices))
            row["fits: end"].append(fit.cut_below or fit.cut_above)
            for cut in side_cuts(box, args.cut):
                row["side cut: side hint"].append(bool(box_contact(clipped(truth, cut), cut).side_slices))
            if label.shape[0] > 1:
                for cut, end in end_cuts(box, args.cut):
                    row["end cut: end hint"].append(getattr(box_contact(clipped(truth, cut), cut), end))
            print(f"{case.case_id:24s} {s.name[:28]:28s} {s.voxels:8d} vx  fits: "
                  f"{'side ' if fit.side_slices else ''}{'end' if fit.cut_below or fit.cut_above else ''}"
                  f"{'-' if not fit else ''}", flush=True)
    columns = ["fits: any hint", "fits: side", "fits: end", "side cut: side hint", "end cut: end hint"]
    _table(counts, columns)

if __name__ == "__main__":
    main()
