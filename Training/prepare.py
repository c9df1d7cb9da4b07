"""Turn image/label volumes or challenge npz files into prepared 2D training slices.

Examples::

    python -m Training.prepare --pair ct_001.nii.gz ct_001_label.nii.gz --preset ct -o data/slices
    python -m Training.prepare --pair mr_dicom_folder/ mr_label.nrrd --preset mr -o data/slices
    python -m Training.prepare --npz CVPR24_train_npz/ -o data/slices      # imgs, gts, spacings
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from LiteMedSAMLib.errors import LiteMedSAMError
from LiteMedSAMLib.preprocessing import PRESET_HELP, PRESETS

from .data import prepare_npz, prepare_pair


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m Training.prepare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pair", nargs=2, action="append", default=[], metavar=("IMAGE", "LABEL"),
                   help="an image and its label map (NRRD, NIfTI, DICOM folder, ...); repeatable")
    p.add_argument("--npz", action="append", default=[],
                   help="a challenge npz file or a folder of them; repeatable")
    p.add_argument("-o", "--output", required=True, help="folder for the prepared slices")
    p.add_argument("--preset", default="auto", choices=PRESETS, help=PRESET_HELP)
    p.add_argument("--min-pixels", type=int, default=100,
                   help="drop objects smaller than this on a slice (official: 100)")
    p.add_argument("--max-slices", type=int, default=None,
                   help="keep at most this many slices per case, evenly spaced")
    args = p.parse_args(argv)
    if not args.pair and not args.npz:
        p.error("give at least one --pair or --npz")
    out = Path(args.output)
    total = 0
    try:
        for image, label in args.pair:
            paths = prepare_pair(image, label, out, args.preset, args.min_pixels, args.max_slices)
            print(f"{image}: {len(paths)} slices")
            total += len(paths)
        for item in args.npz:
            files = sorted(Path(item).glob("*.npz")) if Path(item).is_dir() else [Path(item)]
            for f in files:
                paths = prepare_npz(f, out, args.min_pixels, args.max_slices)
                print(f"{f}: {len(paths)} slices")
                total += len(paths)
    except LiteMedSAMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{total} slices in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
