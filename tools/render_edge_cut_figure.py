"""Render ``Resources/Figures/edge_cut.png``: one negative click with and without the edge cut.

A structure of the suite's test split (default: Colin27's left caudate, AAL label 71, which the
box pass over-segments), default pipeline, default correction (``trained-edit``). The CVPR 2025
protocol's clicks are made until one is negative and the edge cut changes its slice; that click
is shown three ways, cropped around the mask and the reference: the mask before it, after it
without the edge cut, and after it with the cut (the library's default). Reference outline
white, mask green, the click a yellow x. Needs the suite's cache (``tools/fetch_public_data.py``).

    python tools/render_edge_cut_figure.py [--case colin27_aal --label 71] [-o Resources/Figures/edge_cut.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from LiteMedSAMLib.backends import make_predictor  # noqa: E402
from LiteMedSAMLib.boxes import Box3D  # noqa: E402
from LiteMedSAMLib.errors import LiteMedSAMError  # noqa: E402
from LiteMedSAMLib.evaluation import suite  # noqa: E402
from LiteMedSAMLib.evaluation.clicks import next_click  # noqa: E402
from LiteMedSAMLib.evaluation.metrics import dice  # noqa: E402
from LiteMedSAMLib.refinement import RefinementSession  # noqa: E402


def without_cut(session: RefinementSession, click) -> np.ndarray:
    """The clicked slice after ``click`` without the cut; the session is left as it was."""
    session.edge_cut = False
    session.add_point(click.z, click.x, click.y, click.positive)
    result = session.mask[click.z].copy()
    session.undo()
    session.edge_cut = True
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", default="colin27_aal")
    parser.add_argument("--label", type=int, default=71)
    parser.add_argument("--clicks", type=int, default=5)
    parser.add_argument("--data-dir", default=None, help="the suite's cache (default: LITEMEDSAM_DATA_DIR)")
    parser.add_argument("-o", "--output", default="Resources/Figures/edge_cut.png")
    args = parser.parse_args(argv)

    found = [c for c in suite.read_index(args.data_dir, split="test") if c.case_id == args.case]
    if not found:
        raise LiteMedSAMError(f"no test-split case {args.case!r} in the suite's index")
    loaded = suite.load_case(found[0])
    gt = loaded.label == args.label
    preset = suite.PRESET_BY_MODALITY.get(found[0].modality, "auto")
    predictor = make_predictor(None, "exact")
    predictor.set_volume(sitk.GetArrayFromImage(loaded.image), preset, slice_spacing=loaded.spacing_zyx[0])
    session = RefinementSession(predictor, Box3D.from_mask(gt), correction="trained-edit")
    session.run()
    for number in range(1, args.clicks + 1):
        click = next_click(session.mask, gt, loaded.spacing_zyx)
        before = session.mask[click.z].copy()
        plain = None if click.positive else without_cut(session, click)
        session.add_point(click.z, click.x, click.y, click.positive)  # with the cut, as by default
        cut = session.mask[click.z]
        if plain is not None and not np.array_equal(plain, cut):
            break
    else:
        raise LiteMedSAMError(f"no negative click of the first {args.clicks} was changed by the edge cut")

    z, reference = click.z, gt[click.z]
    image = session.predictor.viewed_slice(z)
    ys, xs = np.nonzero(before | reference)
    pad = 12
    y0, y1 = max(ys.min() - pad, 0), min(ys.max() + pad + 1, image.shape[0])
    x0, x1 = max(xs.min() - pad, 0), min(xs.max() + pad + 1, image.shape[1])
    fig, axes = plt.subplots(1, 3, figsize=(11, 4.2))
    panels = ((before, f"before click {number}"), (plain, "negative click, edit alone"),
              (cut, "with the edge cut (default)"))
    for ax, (mask, title) in zip(axes, panels):
        ax.imshow(image[y0:y1, x0:x1], cmap="gray", vmin=0, vmax=255)
        ax.imshow(np.ma.masked_equal(mask[y0:y1, x0:x1], 0), cmap="summer", alpha=0.45, vmin=0, vmax=1)
        ax.contour(reference[y0:y1, x0:x1].astype(float), levels=[0.5], colors="white", linewidths=1.0)
        ax.plot(click.x - x0, click.y - y0, marker="x", color="yellow", markersize=11, mew=2)
        ax.set_title(f"{title}\nslice DSC {dice(mask, reference):.2f}", fontsize=10)
        ax.axis("off")
    fig.suptitle(f"{args.case} label {args.label}, slice {z} (test split; default pipeline, trained-edit)",
                 fontsize=10)
    fig.tight_layout()
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=90, bbox_inches="tight")
    print(args.output, f"click {number} at x={click.x} y={click.y} z={z}: slice DSC "
          f"{dice(before, reference):.3f} -> {dice(plain, reference):.3f} (edit) / {dice(cut, reference):.3f} (cut)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
