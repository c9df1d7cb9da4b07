"""Where a negative prompt cuts a slice's mask: along the image's edges, near the prompt.

A negative click of the correction protocol mostly lands in a leak: the mask ran past the
object's border into a neighbour of similar intensity. The edit heuristic
(:mod:`~LiteMedSAMLib.refinement`) removes what the model's outputs leave out at the click, but
on a nearly right slice the model seldom leaves it out (measured on the 96 corrections of the
click protocol: the click decoder's output agreed with the click at its pixel 11 times), so the
click took away a fifth of the leak it pointed at.

:func:`edge_cut` finds the part of the mask around the prompt that the image's own edges
separate from the rest of the mask: a watershed on the slice's gradient magnitude, flooded
inside the mask from the prompt's pixels and from every mask pixel farther from them than
:data:`REACH` times the mask's depth at the prompt (its distance to the mask's border there).
The prompt's basin is what the click takes away. It ends where the image has its strongest
edge between the two, and never farther than that distance, so one click trims locally and
cannot erase the object. Measured with the click protocol (README, *Interactive refinement*).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .errors import LiteMedSAMError

#: How far (in multiples of the mask's depth at the prompt) a cut may reach from the prompt.
REACH = 4.0
#: The least reach in pixels (a click on the mask's rim has a depth of about one pixel).
MIN_REACH = 3.0
#: Gaussian smoothing (pixels) before the gradient: noise is not an edge.
SMOOTHING = 1.0
_MARGIN = 4  # pixels of image around the mask's bounding box that the gradient looks at


def gradient_magnitude(image: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of a 2-D image (RGB: of its channel mean), after smoothing."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:
        image = image.mean(axis=-1)
    smooth = ndimage.gaussian_filter(image, SMOOTHING)
    return np.hypot(ndimage.sobel(smooth, 0), ndimage.sobel(smooth, 1))


def edge_cut(mask: np.ndarray, image: np.ndarray, pixels: np.ndarray, reach: float = REACH) -> np.ndarray:
    """The part of ``mask`` that a negative prompt at ``pixels`` cuts off along ``image``'s edges.

    Args:
        mask: the slice's mask ``[y, x]`` (non-zero inside).
        image: the slice as the model sees it, same ``[y, x]`` grid (``[y, x, 3]`` for RGB).
        pixels: ``(N, 2)`` integer pixels ``(x, y)`` of the prompt (a click: one; a scribble: its
            stroke); those outside the mask are ignored.
        reach: how far the cut may reach, in multiples of the mask's depth at the prompt.
    Returns:
        A boolean ``[y, x]`` mask, inside ``mask``: empty when no prompt pixel is in the mask or
        the whole mask lies within reach (nothing farther to keep).
    """
    mask = np.asarray(mask) > 0
    image = np.asarray(image)
    if mask.ndim != 2 or image.shape[:2] != mask.shape:
        raise LiteMedSAMError(f"edge_cut needs a 2-D mask and an image on its grid; got mask "
                              f"{mask.shape} and image {image.shape}")
    cut = np.zeros(mask.shape, dtype=bool)
    pixels = np.asarray(pixels, dtype=np.int64).reshape(-1, 2)
    off = (pixels[:, 0] < 0) | (pixels[:, 0] >= mask.shape[1]) | (pixels[:, 1] < 0) | (pixels[:, 1] >= mask.shape[0])
    if off.any():
        raise LiteMedSAMError(f"prompt pixel (x, y) = {tuple(int(v) for v in pixels[off][0])} lies outside "
                              f"the slice ({mask.shape[1]} x {mask.shape[0]})")
    inside = pixels[mask[pixels[:, 1], pixels[:, 0]]]
    if not len(inside):
        return cut
    # Work on the mask's bounding box (and a margin for the gradient): same result, less work.
    ys, xs = np.nonzero(mask)
    y0, y1 = max(ys.min() - _MARGIN, 0), min(ys.max() + _MARGIN + 1, mask.shape[0])
    x0, x1 = max(xs.min() - _MARGIN, 0), min(xs.max() + _MARGIN + 1, mask.shape[1])
    region = mask[y0:y1, x0:x1]
    seeds = np.zeros(region.shape, dtype=bool)
    seeds[inside[:, 1] - y0, inside[:, 0] - x0] = True
    depth = ndimage.distance_transform_edt(region)[seeds].max()
    keep = region & (ndimage.distance_transform_edt(~seeds) > max(reach * depth, MIN_REACH))
    if not keep.any():
        return cut
    markers = np.zeros(region.shape, dtype=np.int16)
    markers[~region] = -1  # outside the mask: never flooded from inside, never part of a basin
    markers[keep], markers[seeds] = 2, 1
    levels = _levels(gradient_magnitude(image[y0:y1, x0:x1]), region)
    levels[markers > 0] = 0  # markers flood from themselves, also where they lie on an edge
    basins = ndimage.watershed_ift(levels, markers)
    cut[y0:y1, x0:x1] = region & (basins == 1)
    return cut


def _levels(gradient: np.ndarray, region: np.ndarray) -> np.ndarray:
    """The gradient as the uint16 levels ``watershed_ift`` floods, stretched over the mask's
    own range; outside the mask the highest level (a wall)."""
    inside = gradient[region]
    low, high = float(inside.min()), float(inside.max())
    levels = np.round((gradient - low) / max(high - low, 1e-9) * 60000)
    levels = np.clip(levels, 0, 60000).astype(np.uint16)
    levels[~region] = np.iinfo(np.uint16).max
    return levels
