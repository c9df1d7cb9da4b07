"""Render ``Resources/Figures/refinement.png``: what simulated correction clicks do on the shipped example.

Left: one slice of the right temporal lobe after the box (green, reference outline white).
Middle: the same slice after 3 clicks of the CVPR 2025 protocol (markers: + object, x
background), default correction (``trained-edit`` with the shipped click decoder). Right: mean
DSC after the box and each click, for ``trained-edit``, the heuristic ``edit`` and SAM-style
re-prompting (``replace``), over the example's three structures. Official pipeline for the box
pass, as the README's click table.

    python tools/render_refinement_figure.py [-o Resources/Figures/refinement.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from LiteMedSAMLib.backends import make_predictor  # noqa: E402
from LiteMedSAMLib.boxes import Box3D  # noqa: E402
from LiteMedSAMLib.evaluation.clicks import evaluate_clicks, next_click  # noqa: E402
from LiteMedSAMLib.example import EXAMPLE_IMAGE, EXAMPLE_LABEL, EXAMPLE_PRESET  # noqa: E402
from LiteMedSAMLib.overlay import draw_orientation_letters, orientation_letters, radiological_flips  # noqa: E402
from LiteMedSAMLib.refinement import RefinementSession  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", default="Resources/Figures/refinement.png")
    args = parser.parse_args()
    image = sitk.ReadImage(str(EXAMPLE_IMAGE))
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(EXAMPLE_LABEL)))
    spacing = image.GetSpacing()[::-1]
    predictor = make_predictor(None, "exact")
    predictor.set_volume(sitk.GetArrayFromImage(image), EXAMPLE_PRESET)

    gt = labels == 2
    session = RefinementSession(predictor, Box3D.from_mask(gt), pipeline="official")
    session.run()
    clicks = []
    before = None
    for _ in range(3):
        click = next_click(session.mask, gt, spacing)
        if before is None:
            z = click.z
            before = session.mask[z].copy()
        session.add_point(click.z, click.x, click.y, click.positive)
        clicks.append(click)
    after = session.mask[z]

    curves = {}
    for correction in ("trained-edit", "edit", "replace"):
        rows = [[s.dsc for s in evaluate_clicks(predictor, labels == value, 5, spacing, correction=correction,
                                                pipeline="official")]
                for value in (1, 2, 3)]
        curves[correction] = np.mean(rows, axis=0)

    flip_rows, flip_cols = radiological_flips(image.GetDirection())
    view = predictor.slice_uint8(z)

    def oriented(a):
        a = a[::-1] if flip_rows else a
        return a[:, ::-1] if flip_cols else a

    h, w = view.shape
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.4), gridspec_kw={"width_ratios": [1, 1, 1.15]})
    for ax, mask, title in ((axes[0], before, "box only"), (axes[1], after, "after 3 clicks")):
        ax.imshow(oriented(view), cmap="gray")
        ax.imshow(np.ma.masked_equal(oriented(mask), 0), cmap="summer", alpha=0.45, vmin=0, vmax=1)
        ax.contour(oriented(gt[z].astype(float)), levels=[0.5], colors="white", linewidths=1.0)
        from LiteMedSAMLib.evaluation.metrics import dice

        ax.set_title(f"right temporal lobe, slice {z}: {title}\nslice DSC {dice(mask, gt[z]):.2f}", fontsize=10)
        ax.axis("off")
        draw_orientation_letters(ax, orientation_letters(image.GetDirection(), flip_rows, flip_cols), fontsize=10)
    for click in clicks:
        if click.z != z:
            continue
        y = h - 1 - click.y if flip_rows else click.y
        x = w - 1 - click.x if flip_cols else click.x
        axes[1].plot(x, y, marker="+" if click.positive else "x", color="yellow", markersize=12, mew=2)
    steps = np.arange(6)
    axes[2].plot(steps, curves["trained-edit"], "o-", label="trained-edit (default)")
    axes[2].plot(steps, curves["edit"], "^-", label="edit (no click decoder)")
    axes[2].plot(steps, curves["replace"], "s--", label="replace (SAM-style re-prompt)")
    axes[2].set_xticks(steps, ["box", "+1", "+2", "+3", "+4", "+5"])
    axes[2].set_ylabel("mean 3D DSC, 3 structures")
    axes[2].set_title("simulated clicks (CVPR 2025 protocol)", fontsize=10)
    axes[2].grid(alpha=0.3)
    axes[2].legend(loc="lower right")
    fig.tight_layout()
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=90, bbox_inches="tight")
    print(args.output, *(f"{k} {np.round(v, 3)}" for k, v in curves.items()))


if __name__ == "__main__":
    main()
