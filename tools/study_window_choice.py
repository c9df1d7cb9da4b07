"""Record what the default pipeline's window choice could know on the start slice, and what each
window gives over the whole object, for every structure of a suite split.

    python tools/study_window_choice.py record --split train -o /work/cache/window_train.json
    python tools/study_window_choice.py rules /work/cache/window_train.json

``record`` runs each structure of the split (the suite's selection, 3D bounding boxes) twice with
the default pipeline's levers: once with the volume's own intensity mapping and once with the box
window (no choice), and writes per structure the final DSC / NSD of both, and on the start slice,
for both windows, the features a choice rule could use: the model's predicted IoU, the mask's
fit to the box (``box_fit``), the stability of its logits (SAM's stability score: the IoU of the
masks at logit thresholds +1 and -1), its share of the box, the raw-intensity contrast between
the mask and the rest of the box, and how much stronger the image's gradient is on the mask's
border than inside the box; and each slice of both sweeps (predicted IoU, area, overlap with the
slice it was prompted from, DSC). ``rules`` replays a family of choice rules on a recorded file (the
choice is the only thing that differs, so replaying it is exact) and prints each rule's mean DSC
next to the two windows', the shipped rule's and the oracle's; ``--lookahead K`` scores rules
that also read both sweeps' first K slices each way, ``--cross-validate`` chooses a rule on all
datasets but one and scores the one left out (does choosing this way carry to unseen data?).

The choice is made on the train split; the test split is replayed once, with the rule chosen.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from LiteMedSAMLib.backends import make_predictor  # noqa: E402
from LiteMedSAMLib.evaluation import suite  # noqa: E402
from LiteMedSAMLib.evaluation.metrics import dice, normalized_surface_dice  # noqa: E402
from LiteMedSAMLib.pipeline import DEFAULT, box_fit, frame_for_box  # noqa: E402
from LiteMedSAMLib.predictor import FramedPredictor  # noqa: E402
from LiteMedSAMLib.propagation import middle_slice  # noqa: E402
from LiteMedSAMLib.refinement import RefinementSession  # noqa: E402
from LiteMedSAMLib.registry import load_model  # noqa: E402

VOLUME = replace(DEFAULT, name="default-volume-mapping", window=False, window_choice=False)
WINDOW = replace(DEFAULT, name="default-box-window", window_choice=False)
# the default's own rule (pipeline.choose_frame): predicted IoU + fit weight x box fit, margin
SHIPPED = ({"iou": 1.0, "fit": DEFAULT.window_choice_fit}, DEFAULT.window_choice_margin)


def slice_features(view, raw: np.ndarray, z: int, box2d) -> tuple[dict, np.ndarray]:
    """The start slice through one window: the mask and what a rule could read from it."""
    result = view.predict_model_box(z, view.box_to_model(box2d))
    logits = result.low_res_logits.detach().float().numpy()[0, 0]
    inner, outer = (logits > 1.0).sum(), (logits > -1.0).sum()
    mask = result.mask.astype(bool)
    x0, y0, x1, y1 = box2d
    inside = np.zeros_like(mask)
    inside[y0:y1 + 1, x0:x1 + 1] = True
    values = raw.astype(np.float64)
    a, b = values[mask & inside], values[inside & ~mask]
    contrast = 0.0
    if a.size > 1 and b.size > 1:
        contrast = float(abs(a.mean() - b.mean()) / (np.sqrt(0.5 * (a.var() + b.var())) + 1e-6))
    gy, gx = np.gradient(values)
    grad = np.hypot(gx, gy)
    border = mask & ~ndimage.binary_erosion(mask)  # 4-connected, nothing outside the slice
    edge = 0.0
    if border.any() and grad[inside].mean() > 0:
        edge = float(grad[border].mean() / grad[inside].mean())
    feats = {"iou": float(result.iou), "fit": box_fit(result.mask, box2d), **extent(mask, box2d),
             "stability": float(inner / outer) if outer else 0.0,
             "area": float(mask[inside].mean()), "contrast": contrast, "edge": edge}
    return feats, mask


def extent(mask: np.ndarray, box2d) -> dict:
    """How a start-slice mask sits in a 3D box's in-plane box without punishing it for being
    smaller (the box is the union of the object's extents over its slices): ``within``, the share
    of the mask inside the box (1: no leak); ``span``, the larger of the mask's width and height
    over the box's (an object usually reaches across its box one way)."""
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return {"within": 0.0, "span": 0.0}
    x0, y0, x1, y1 = box2d
    inside = (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
    span = max((xs.max() - xs.min() + 1) / (x1 - x0 + 1), (ys.max() - ys.min() + 1) / (y1 - y0 + 1))
    return {"within": float(inside.mean()), "span": float(min(span, 1.0))}


class SweepRecorder:
    """Record the last prediction of each slice while a sweep runs on ``predictor`` (its
    ``predict_model_box``, which frame views and the click decoder's calls go through)."""

    def __init__(self, predictor) -> None:
        self.predictor, self.results = predictor, {}

    def __enter__(self):
        original = self.predictor.predict_model_box

        def recording(z, *args, **kwargs):
            result = original(z, *args, **kwargs)
            self.results[int(z)] = result
            return result

        self.predictor.predict_model_box = recording
        return self

    def __exit__(self, *exc) -> None:
        del self.predictor.predict_model_box  # the class's method again

    def rows(self, start: int, gt: np.ndarray) -> list[dict]:
        """Per slice, in distance from the start slice: predicted IoU, area, IoU with the slice
        one step nearer the start (what the sweep was prompted from), DSC against the label."""
        out = []
        for z in sorted(self.results, key=lambda k: (abs(k - start), k)):
            mask = self.results[z].mask.astype(bool)
            toward = z - 1 if z > start else z + 1
            prev = self.results.get(toward)
            overlap = None
            if z != start and prev is not None:
                p = prev.mask.astype(bool)
                union = (mask | p).sum()
                overlap = float((mask & p).sum() / union) if union else 1.0
            out.append({"z": z, "offset": z - start, "iou": float(self.results[z].iou),
                        "area": int(mask.sum()), "overlap": overlap, "dsc": dice(mask, gt[z])})
        return out


def record(args) -> None:
    cases = suite.read_index(args.data_dir, split=args.split)
    model = load_model(None)
    predictor = make_predictor(model, "exact", threads=args.threads)
    rows = []
    for case in cases:
        chosen = suite.case_structures(case, max_structures=args.max_structures)
        loaded, eligible, preset = chosen.loaded, chosen.structures, chosen.preset
        if not eligible:
            continue
        array = sitk.GetArrayFromImage(loaded.image)
        if array.ndim == 2:
            array = array[None]
        spacing = float(loaded.image.GetSpacing()[2]) if case.dimension == 3 else None
        predictor.set_volume(array, preset=preset, slice_spacing=spacing)
        t0 = time.perf_counter()
        for s, box in zip(eligible, chosen.prompts):
            gt = (loaded.label == s.value)
            gt3 = gt if gt.ndim == 3 else gt[None]
            z = middle_slice(box.z0, box.z1)
            raw = array[z]
            row = {"case": case.case_id, "dataset": case.dataset, "modality": case.modality,
                   "name": s.name, "voxels": s.voxels, "spacing": spacing}
            frame = frame_for_box(WINDOW, predictor, box.box2d, (box.z0, box.z1))
            for key, view in (("volume", predictor),
                              ("window", None if frame is None else FramedPredictor(predictor, frame))):
                if view is None:  # no box window (RGB, constant box): the same as the volume's
                    row[key] = dict(row["volume"])
                    continue
                feats, mask2d = slice_features(view, raw, z, box.box2d)
                feats["start_dsc"] = dice(mask2d, gt3[z])
                pipeline = VOLUME if key == "volume" else WINDOW
                with SweepRecorder(predictor) as sweep:
                    mask = RefinementSession(predictor, box, pipeline=pipeline).run()
                feats["sweep"] = sweep.rows(z, gt3)
                mask = mask.astype(bool).reshape(gt3.shape)
                feats["dsc"] = dice(mask, gt3)
                feats["nsd"] = normalized_surface_dice(mask.reshape(gt.shape), gt, loaded.spacing_zyx, 2.0)
                row[key] = feats
            rows.append(row)
            print(f"{case.case_id} {s.name}: volume {row['volume']['dsc']:.3f} "
                  f"window {row['window']['dsc']:.3f}", flush=True)
        print(f"{case.case_id}: {time.perf_counter() - t0:.0f} s", flush=True)
    Path(args.output).write_text(json.dumps({"split": args.split, "rows": rows}, indent=1))


def lookahead(rows: list[dict], k: int) -> None:
    """Add what a choice could read after sweeping ``k`` slices each way from the start with
    both windows (2k more encoder runs per object): the mean predicted IoU over those slices
    and the start (``look_iou``) and the mean overlap of each with its neighbour (``look_overlap``)."""
    for r in rows:
        for side in ("volume", "window"):
            sweep = [s for s in r[side]["sweep"] if abs(s["offset"]) <= k]
            r[side]["look_iou"] = float(np.mean([s["iou"] for s in sweep]))
            overlaps = [s["overlap"] for s in sweep if s["overlap"] is not None]
            r[side]["look_overlap"] = float(np.mean(overlaps)) if overlaps else 1.0


def score(rows: list[dict], weights: dict, side: str) -> np.ndarray:
    """Each row's weighted feature score for one window (``"volume"`` or ``"window"``)."""
    return np.array([sum(w * r[side][f] for f, w in weights.items()) for r in rows])


def choose(rows: list[dict], weights: dict, margin: float) -> np.ndarray:
    """Keep the box window where its weighted feature score beats the volume's by > margin."""
    return score(rows, weights, "window") > score(rows, weights, "volume") + margin


def mean_dsc(rows: list[dict], keep: np.ndarray) -> float:
    return float(np.mean([r["window"]["dsc"] if k else r["volume"]["dsc"] for r, k in zip(rows, keep)]))


GRID = {"iou": (1.0,), "fit": (0, 0.5, 1, 2), "stability": (0, 0.5, 1, 2), "area": (0,),
        "contrast": (0, 0.05, 0.1), "edge": (0, 0.05, 0.1, 0.2)}
# with a look-ahead the start slice's IoU is replaced by the mean over the look-ahead
GRID_LOOKAHEAD = {"look_iou": (1.0,), "fit": (0, 0.5, 1, 2), "look_overlap": (0, 0.5, 1, 2),
                  "stability": (0, 1), "edge": (0, 0.05)}
# the extent features in place of the fit (records made since 2026-12-06 have them)
GRID_EXTENT = {"iou": (1.0,), "fit": (0, 0.5, 1), "within": (0, 0.5, 1, 2), "span": (0, 0.5, 1, 2),
               "stability": (0, 0.5, 1)}
MARGINS = (0.0, 0.02, 0.05)
TIE = 0.0005  # rules this close to the best count as tied; the one with fewest features wins


def replay_grid(rows: list[dict], grid: dict) -> list[tuple]:
    """Every rule of the grid replayed: ``(mean DSC, features used, weights, margin, kept)``,
    best first."""
    results = []
    for values in itertools.product(*grid.values()):
        weights = dict(zip(grid, values))
        for margin in MARGINS:
            keep = choose(rows, weights, margin)
            used = sum(1 for w in weights.values() if w)
            results.append((mean_dsc(rows, keep), used, weights, margin, int(keep.sum())))
    results.sort(key=lambda t: -t[0])
    return results


def simplest_best(results: list[tuple]) -> tuple:
    """The rule chosen from a replayed grid: the fewest features among those within ``TIE`` of
    the best mean DSC (then the higher score)."""
    tied = [r for r in results if r[0] >= results[0][0] - TIE]
    return min(tied, key=lambda r: (r[1], -r[0]))


GATES = (1.2, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9)


def gated(rows: list[dict], threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The shipped rule behind a gate: the box window is only tried (one more encoder run) where
    the volume mapping's own start score (IoU + fit weight x fit) is below ``threshold``; above it
    the volume's mapping is kept unexamined. Returns ``(kept, tried)`` per row."""
    tried = score(rows, SHIPPED[0], "volume") < threshold
    return choose(rows, *SHIPPED) & tried, tried


def gate(rows: list[dict]) -> None:
    """Print each of :data:`GATES`' mean DSC and the box-window trials it saves."""
    for threshold in GATES:
        keep, tried = gated(rows, threshold)
        print(f"gate {threshold:g}: {mean_dsc(rows, keep):.4f} (box window tried {int(tried.sum())}/"
              f"{len(rows)}, kept {int(keep.sum())})")


def rules(args) -> None:
    rows = json.loads(Path(args.file).read_text())["rows"]
    if args.lookahead:
        lookahead(rows, args.lookahead)
    vol = np.array([r["volume"]["dsc"] for r in rows])
    win = np.array([r["window"]["dsc"] for r in rows])
    print(f"{len(rows)} structures: volume mapping {vol.mean():.4f}, box window {win.mean():.4f}, "
          f"oracle {np.maximum(vol, win).mean():.4f}")
    shipped = choose(rows, *SHIPPED)
    print(f"shipped rule ({SHIPPED[0]}, margin {SHIPPED[1]:g}): {mean_dsc(rows, shipped):.4f}")
    grid = GRID_LOOKAHEAD if args.lookahead else GRID_EXTENT if args.extent else GRID
    results = replay_grid(rows, grid)
    for dsc, _, weights, margin, kept in results[:args.top]:
        shown = ", ".join(f"{f} {w:g}" for f, w in weights.items() if w)
        print(f"{dsc:.4f}  {shown}; margin {margin:g}; box window kept {kept}/{len(rows)}")
    dsc, _, weights, margin, _ = simplest_best(results)
    print(f"simplest within {TIE:g} of the best: {weights}, margin {margin:g}: {dsc:.4f}")
    if args.cross_validate:
        pooled = {"shipped": [], "chosen": []}
        for group in sorted({r["dataset"] for r in rows}):
            seen = [r for r in rows if r["dataset"] != group]
            held = [r for r in rows if r["dataset"] == group]
            _, _, w, m, _ = simplest_best(replay_grid(seen, grid))
            got = {"shipped": mean_dsc(held, choose(held, *SHIPPED)),
                   "chosen": mean_dsc(held, choose(held, w, m))}
            for key, value in got.items():
                pooled[key] += [value] * len(held)
            print(f"  {group} left out ({len(held)}): shipped {got['shipped']:.4f}, chosen on the "
                  f"others {got['chosen']:.4f} ({w}, margin {m:g})")
        print(f"leave one dataset out, pooled: shipped {np.mean(pooled['shipped']):.4f}, "
              f"chosen {np.mean(pooled['chosen']):.4f}")
    if args.gate:
        gate(rows)
    if args.rule:
        weights = json.loads(args.rule)
        keep = choose(rows, weights, args.margin)
        print(f"given rule {weights}, margin {args.margin:g}: {mean_dsc(rows, keep):.4f}")
        for r, k, s in zip(rows, keep, shipped):
            if k != s:
                print(f"  {r['case']} {r['name']}: shipped {'window' if s else 'volume'} -> "
                      f"{'window' if k else 'volume'} ({r['volume']['dsc']:.3f} / {r['window']['dsc']:.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("--split", default="train")
    rec.add_argument("--data-dir", default=None)
    rec.add_argument("--max-structures", type=int, default=5)
    rec.add_argument("--threads", type=int, default=2)
    rec.add_argument("-o", "--output", required=True)
    rul = sub.add_parser("rules")
    rul.add_argument("file")
    rul.add_argument("--top", type=int, default=15)
    rul.add_argument("--rule", help="JSON weights of one rule to replay, e.g. '{\"iou\": 1, \"fit\": 1}'")
    rul.add_argument("--margin", type=float, default=0.02)
    rul.add_argument("--cross-validate", action="store_true",
                     help="choose on all datasets but one, score the one left out, for each")
    rul.add_argument("--extent", action="store_true",
                     help="rules on the extent features (within, span) beside the fit")
    rul.add_argument("--gate", action="store_true",
                     help="replay the shipped rule behind gates on the volume mapping's own score")
    rul.add_argument("--lookahead", type=int, default=0,
                     help="also read the sweep's first K slices each way (needs a record with sweeps)")
    args = parser.parse_args()
    record(args) if args.command == "record" else rules(args)


if __name__ == "__main__":
    main()
