"""The segment colour palette, shared by the command line's files and pictures and by the
Slicer module, so that the same result is coloured alike everywhere (no heavy imports: the
Slicer logic reads it without torch).
"""

from __future__ import annotations

# Slicer's generic-anatomy colours (RGB in [0, 1]), distinct and anatomy-like: tissue green,
# bone, muscle, ... Segment i gets colour i modulo the palette's length.
SEGMENT_COLORS: tuple[tuple[float, float, float], ...] = tuple(
    (r / 255.0, g / 255.0, b / 255.0) for r, g, b in (
        (128, 174, 128), (241, 214, 145), (177, 122, 101), (111, 184, 210),
        (216, 101, 79), (221, 130, 101), (144, 238, 144), (192, 104, 88),
        (220, 245, 20), (78, 63, 0), (255, 250, 220), (230, 220, 70),
    )
)


def segment_color(index: int) -> tuple[float, float, float]:
    """The palette colour of the ``index``-th segment (0-based), repeating after the last."""
    return SEGMENT_COLORS[index % len(SEGMENT_COLORS)]
