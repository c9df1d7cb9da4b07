"""Would cleaning the default pipeline's masks up pay? Score clean-up rules on a suite split.

    python tools/study_mask_cleanup.py --split train
    python tools/study_mask_cleanup.py --split test [--dataset stardist_2d ...]

Each structure of the split (the suite's selection, at most 5 per case, 3D bounding boxes, as
``litemedsam evaluate-suite --max-structures 5``) is segmented once with the default pipeline;
every rule is then applied to that mask (no re-run) and scored against the label: keep the
largest 3D connected component (26-connected), fill holes on each slice, both, or keep the
largest component of each slice. Prints each structure's DSC under every rule, then per rule
the mean DSC and how many structures move by more than 0.005 either way.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from LiteMedSAMLib.evaluation import suite  # noqa: E402
from LiteMedSAMLib.evaluation.metrics import dice  # noqa: E402
from LiteMedSAMLib.segmentation import segment_image  # noqa: E402


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest connected component of ``mask`` (full connectivity in its own rank)."""
    labels, count = ndimage.label(mask, np.ones((3,) * mask.ndim, dtype=bool))
    if count <= 1:
        return mask
    sizes = ndimage.sum(mask, labels, range(1, count + 1))
    return labels == int(np.argmax(sizes)) + 1


def fill_slices(mask: np.ndarray) -> np.ndarray:
    return np.stack([ndimage.binary_fill_holes(s) for s in mask])


def largest_per_slice(mask: np.ndarray) -> np.ndarray:
    return np.stack([largest_component(s) for s in mask])


RULES = {
    "as is": lambda m: m,
    "largest 3D component": largest_component,
    "holes filled": fill_slices,
    "both": lambda m: fill_slices(largest_component(m)),
    "largest per slice": largest_per_slice,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", choices=("train", "test"), default="train")
    parser.add_argument("--dataset", action="append", default=None, help="only these datasets")
    parser.add_argument("--data-dir", default=None, help="the suite's cache (default: LITEMEDSAM_DATA_DIR)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    scores: dict[str, list[float]] = {rule: [] for rule in RULES}
    for case in suite.read_index(args.data_dir, split=args.split, datasets=args.dataset):
        chosen = suite.case_structures(case, max_structures=5)
        if not chosen.structures:
            continue
        loaded = chosen.loaded
        masks, _ = segment_image(loaded.image, chosen.prompts, preset=chosen.preset, pipeline="default",
                                 threads=args.threads)
        for s, mask in zip(chosen.structures, masks):
            gt = loaded.label == s.value
            pred = np.asarray(mask, bool).reshape(gt.shape)
            if pred.ndim == 2:  # a 2-D image: one slice
                pred, gt = pred[None], gt[None]
            row = {rule: dice(clean(pred), gt) for rule, clean in RULES.items()}
            for rule, value in row.items():
                scores[rule].append(value)
            print(f"{case.case_id} label {s.value}: " + ", ".join(f"{r} {v:.3f}" for r, v in row.items()),
                  flush=True)
    plain = np.array(scores["as is"])
    for rule, values in scores.items():
        v = np.array(values)
        print(f"{rule:>22}: mean DSC {v.mean():.4f} over {len(v)} structures; "
              f"up {int((v > plain + 0.005).sum())}, down {int((v < plain - 0.005).sum())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
