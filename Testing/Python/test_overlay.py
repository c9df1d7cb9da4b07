"""Overlay pictures (LiteMedSAMLib.overlay): the rendered layout keeps titles, the legend and
the orientation letters inside the figure, for any number of boxes."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from LiteMedSAMLib.imageio import DEFAULT_COLORS  # noqa: E402
from LiteMedSAMLib.overlay import orientation_letters, overlay_figure, radiological_flips  # noqa: E402

LPS_IDENTITY = (1, 0, 0, 0, 1, 0, 0, 0, 1)
RAS_STORED = (-1, 0, 0, 0, -1, 0, 0, 0, 1)  # a NIfTI written from RAS: x points right, y anterior


@pytest.mark.parametrize("direction, flips, expected", [
    (LPS_IDENTITY, (False, False), {"left": "R", "right": "L", "top": "A", "bottom": "P"}),
    (RAS_STORED, (True, True), {"left": "R", "right": "L", "top": "A", "bottom": "P"}),
    (RAS_STORED, (False, False), {"left": "L", "right": "R", "top": "P", "bottom": "A"}),
    # a coronal slice: x left-right, y from superior to inferior
    ((1, 0, 0, 0, 0, 1, 0, -1, 0), (False, False), {"left": "R", "right": "L", "top": "S", "bottom": "I"}),
])
def test_orientation_letters_follow_the_direction_cosines(direction, flips, expected):
    assert orientation_letters(direction, *flips) == expected


def test_oblique_slices_get_two_letters():
    angle = np.deg2rad(30)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    letters = orientation_letters(tuple(rot.ravel()), *radiological_flips(tuple(rot.ravel())))
    assert letters["right"] == "LP" and letters["left"] == "RA"


def _inside(fig, artist, renderer):
    box, frame = artist.get_window_extent(renderer), fig.bbox
    return (box.x0 >= frame.x0 - 0.5 and box.y0 >= frame.y0 - 0.5 and box.x1 <= frame.x1 + 0.5
            and box.y1 <= frame.y1 + 0.5)


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_titles_legend_and_letters_stay_inside_the_figure(count):
    image = (np.arange(120 * 100) % 251).reshape(120, 100).astype(np.uint8)
    masks = []
    for i in range(count):
        mask = np.zeros((120, 100), np.uint8)
        mask[10 + 10 * i: 20 + 10 * i, 20:60] = 1
        masks.append(mask)
    names = [f"structure number {i + 1} with a long name" for i in range(count)]
    colors = [DEFAULT_COLORS[i % len(DEFAULT_COLORS)] for i in range(count)]
    boxes = [(20, 10 + 10 * i, 59, 19 + 10 * i) for i in range(count)]
    fig = overlay_figure(image, masks, names, colors, boxes, title="LiteMedSAM, slice 11",
                         flip_rows=True, flip_cols=False, direction=RAS_STORED)
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        (legend,) = fig.legends
        assert [t.get_text() for t in legend.get_texts()] == names
        assert _inside(fig, legend, renderer)
        axes = fig.axes
        for ax in axes:
            assert _inside(fig, ax.title, renderer) and ax.title.get_text()
            letters = {t.get_gid(): t.get_text() for t in ax.texts if (t.get_gid() or "").startswith("orientation")}
            assert letters == {"orientation-left": "L", "orientation-right": "R",
                               "orientation-top": "A", "orientation-bottom": "P"}
            for text in ax.texts:
                assert _inside(fig, text, renderer)
                assert ax.get_window_extent(renderer).contains(*text.get_window_extent(renderer).get_points().mean(0))
        # the legend sits below the images and the titles above them: nothing covers the slice
        for ax in axes:
            image_box = ax.get_window_extent(renderer)
            assert legend.get_window_extent(renderer).y1 <= image_box.y0 + 1
            assert ax.title.get_window_extent(renderer).y0 >= image_box.y1 - 1
    finally:
        plt.close(fig)


def test_benchmark_figure_draws_each_floor_under_the_bars_it_bounds():
    """Re-plotted from the shipped benchmark JSON: every matmul floor sits across its own bar
    and below its top (an encoder run cannot beat the matmul peak), labels do not overlap,
    and the text tables say "-" where the reference has no latency."""
    import json
    from pathlib import Path

    from LiteMedSAMLib.evaluation.benchmark import benchmark_figure, format_header, format_row, markdown_table

    report = json.loads((Path(__file__).parents[2] / "Resources" / "Figures" / "benchmark.json").read_text())
    fig = benchmark_figure(report)
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            texts = [t for t in ax.texts if t.get_text()] + [ax.title]
            boxes = [t.get_window_extent(renderer) for t in texts]
            for i, a in enumerate(boxes):
                assert _inside(fig, texts[i], renderer)
                for b in boxes[i + 1:]:
                    assert not a.overlaps(b), (texts[i].get_text(), ax.get_title())
        encoder_axes = [ax for ax in fig.axes if "per encoded slice" in ax.get_title()]
        assert len(encoder_axes) == 2
        for ax in encoder_axes:
            bars = [p for p in ax.patches]
            floors = [seg for coll in ax.collections for seg in coll.get_segments()]
            assert len(floors) == len(bars) == 4
            for bar, floor in zip(sorted(bars, key=lambda b: b.get_x()), sorted(floors, key=lambda f: f[0][0])):
                assert floor[0][0] == bar.get_x() and floor[0][1] <= bar.get_height()
                for text in ax.texts:  # no label crosses a floor line
                    extent = text.get_window_extent(renderer).transformed(ax.transData.inverted())
                    assert not (extent.x0 < floor[1][0] and extent.x1 > floor[0][0]
                                and extent.y0 < floor[0][1] < extent.y1)
        assert _inside(fig, fig.legends[0], renderer)
    finally:
        plt.close(fig)
    reference = next(r for r in report["runs"] if r["mode"] == "reference")
    assert format_header().split()[:3] == ["mode", "sweep", "s"]
    assert format_row(reference).split()[-3:-1] == ["-", "-"] and "nan" not in markdown_table(report)
