"""Encoder runs per box: the official pipeline against another, one box at a time.

    python tools/encoded_slices_per_box.py --split test [--pipeline default] [--dataset ...]

``litemedsam evaluate-suite`` segments all structures of a case with one predictor, so a
pipeline that sees every slice the same way (the official one) shares each slice's embedding
between the structures, and one that chooses a window per object does not. Here each structure
(the suite's selection, at most 5 per case, 3D bounding boxes) is segmented alone with a fresh
predictor, as a user drawing one box in the Slicer module has it, and the encoder runs of each
pipeline are counted. Prints one line per structure (its slices, the runs of both) and the
totals with their ratio.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from LiteMedSAMLib.evaluation import suite  # noqa: E402
from LiteMedSAMLib.segmentation import segment_image  # noqa: E402


def encoder_runs(image, prompt, preset: str, pipeline: str, threads: int) -> int:
    """How many slices one box costs the encoder with ``pipeline`` (a fresh predictor)."""
    _, predictor = segment_image(image, [prompt], preset=preset, pipeline=pipeline, threads=threads)
    return int(predictor.encoder_runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", choices=("train", "test"), default="test")
    parser.add_argument("--pipeline", default="default", help="compared with the official one")
    parser.add_argument("--dataset", action="append", default=None, help="only these datasets")
    parser.add_argument("--data-dir", default=None, help="the suite's cache (default: LITEMEDSAM_DATA_DIR)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    totals = {"official": 0, args.pipeline: 0}
    for case in suite.read_index(args.data_dir, split=args.split, datasets=args.dataset):
        chosen = suite.case_structures(case, max_structures=5)
        for s, prompt in zip(chosen.structures, chosen.prompts):
            runs = {p: encoder_runs(chosen.loaded.image, prompt, chosen.preset, p, args.threads) for p in totals}
            for p, n in runs.items():
                totals[p] += n
            slices = s.box[5] - s.box[2] + 1 if case.dimension == 3 else 1
            print(f"{case.case_id} {s.name}: {slices} slices; "
                  + ", ".join(f"{p} {n}" for p, n in runs.items()), flush=True)
    official, other = totals["official"], totals[args.pipeline]
    print(f"total encoder runs: official {official}, {args.pipeline} {other} "
          f"(ratio {other / max(official, 1):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
