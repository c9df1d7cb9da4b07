"""The official LiteMedSAM pre- and post-processing, as one tested module.

Intensity normalisation follows MedSAM's ``pre_CT_MR.py`` (used to build the CVPR 2024
challenge data): CT is clipped to a window and min-max scaled to uint8; MR and other
modalities are clipped to the 0.5-99.5 percentiles of the non-zero voxels, scaled, and
zero voxels stay zero. Slice preparation and box/mask transforms follow
``CVPR24_LiteMedSAM_infer.py``: grayscale is repeated to 3 channels, the longest side is
resized to 256 with OpenCV's ``INTER_AREA``, values are min-max normalised to [0, 1] and
the image is zero-padded at the bottom/right to 256x256. Boxes are scaled by the same
factor (truncated to integers as the official script does); mask logits are cropped to
the resized area, resized back bilinearly and thresholded at sigmoid > 0.5.

Normalisation is applied slice by slice with the *volume's* bounds, which gives the same
bytes as normalising the whole volume at once but needs no full-size float copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .errors import LiteMedSAMError
from .presets import CT_WINDOWS, PRESET_HELP, PRESETS  # noqa: F401 (re-exported)

MODEL_INPUT_SIZE = 256

@dataclass(frozen=True)
class IntensityMapping:
    """How raw voxel values become uint8: clip to ``[lower, upper]``, then scale
    ``[vmin, vmax]`` (the clipped volume's range) to [0, 255]; ``zero_stays_zero`` keeps
    voxels that are exactly 0 at 0 (the MR rule). ``kind == "none"`` leaves uint8 as is."""

    kind: str
    lower: float = 0.0
    upper: float = 255.0
    vmin: float = 0.0
    vmax: float = 255.0
    zero_stays_zero: bool = False

    def apply(self, data: np.ndarray) -> np.ndarray:
        """Map an array of raw values (any shape) to uint8 with this volume's bounds."""
        if self.kind == "none":
            return np.asarray(data, dtype=np.uint8)
        clipped = np.clip(data, self.lower, self.upper)
        span = self.vmax - self.vmin
        if span <= 0:  # constant image: nothing to scale, the model sees black
            return np.zeros(np.shape(data), dtype=np.uint8)
        out = ((clipped - self.vmin) / span * 255.0).astype(np.uint8)
        if self.zero_stays_zero:
            out[np.asarray(data) == 0] = 0
        return out


def resolve_preset(volume: np.ndarray, preset: str = "auto",
                   window: tuple[float, float] | None = None) -> str:
    """Name the intensity rule for ``volume``: a preset name, or ``"window"`` for a custom one."""
    if window is not None:
        return "window"
    if preset not in PRESETS:
        raise LiteMedSAMError(f"unknown intensity preset {preset!r}; choose one of {', '.join(PRESETS)}"
                              " or give a custom window (width, level)")
    if preset != "auto":
        return preset
    if volume.dtype == np.uint8:
        return "none"
    return "ct" if float(np.min(volume)) <= -500 else "mr"


def intensity_mapping(volume: np.ndarray, preset: str = "auto",
                      window: tuple[float, float] | None = None) -> IntensityMapping:
    """Compute the uint8 mapping of a whole volume (or 2D image) as the official data preparation.

    Args:
        volume: raw voxel values, ``[z, y, x]``, ``[y, x]`` or with a trailing RGB axis.
        preset: a name from :data:`PRESETS`.
        window: custom CT window ``(width, level)``; overrides ``preset``.
    """
    kind = resolve_preset(volume, preset, window)
    if kind == "none":
        if volume.dtype != np.uint8 and (np.min(volume) < 0 or np.max(volume) > 255):
            raise LiteMedSAMError("preset 'none' needs an image already scaled to 0-255 (uint8); "
                                  f"this one ranges {np.min(volume)}..{np.max(volume)}: "
                                  "choose a CT window or 'mr'")
        return IntensityMapping("none")
    if kind in ("window", *CT_WINDOWS):
        width, level = window if window is not None else CT_WINDOWS[kind]
        if width <= 0:
            raise LiteMedSAMError(f"window width must be positive, got {width}")
        lower, upper = level - width / 2, level + width / 2
        zero_stays_zero = False
    else:  # mr
        nonzero = volume[volume > 0]
        if nonzero.size == 0:
            raise LiteMedSAMError("the image has no positive voxels, so the MR percentile "
                                  "normalisation is undefined: choose a CT window instead")
        lower, upper = np.percentile(nonzero, 0.5), np.percentile(nonzero, 99.5)
        zero_stays_zero = True
    # min/max of the clipped volume, with the dtype rules of clipping the whole volume
    ends = np.clip(np.array([np.min(volume), np.max(volume)], dtype=volume.dtype), lower, upper)
    return IntensityMapping(kind, lower, upper, ends[0], ends[1], zero_stays_zero)


def to_three_channels(image: np.ndarray) -> np.ndarray:
    """``[H, W]`` grayscale -> ``[H, W, 3]`` by repetition; ``[H, W, 3|4]`` -> first 3 channels."""
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=-1)
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        return image[:, :, :3]
    raise LiteMedSAMError(f"expected a 2D grayscale or RGB slice, got shape {image.shape}")


def resized_shape(height: int, width: int, target: int = MODEL_INPUT_SIZE) -> tuple[int, int]:
    """``(new_h, new_w)`` after scaling the longest side to ``target`` (rounded as official)."""
    scale = target * 1.0 / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def resize_longest_side(image: np.ndarray, target: int = MODEL_INPUT_SIZE) -> np.ndarray:
    """Resize so that the longest side is ``target``, with OpenCV ``INTER_AREA`` (official)."""
    new_h, new_w = resized_shape(image.shape[0], image.shape[1], target)
    return cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)


def pad_to_square(image: np.ndarray, target: int = MODEL_INPUT_SIZE) -> np.ndarray:
    """Zero-pad at the bottom and right to ``target x target``."""
    pad_h, pad_w = target - image.shape[0], target - image.shape[1]
    widths = ((0, pad_h), (0, pad_w)) + ((0, 0),) * (image.ndim - 2)
    return np.pad(image, widths)


def prepare_slice(slice_uint8: np.ndarray) -> torch.Tensor:
    """uint8 slice ``[H, W]`` or ``[H, W, 3]`` -> model input ``(1, 3, 256, 256)`` float32 in [0, 1]."""
    img = resize_longest_side(to_three_channels(slice_uint8))
    img = (img - img.min()) / np.clip(img.max() - img.min(), a_min=1e-8, a_max=None)
    img = pad_to_square(img)
    return torch.tensor(img).float().permute(2, 0, 1).unsqueeze(0)


def box_to_model(box: np.ndarray | tuple[float, ...], original_hw: tuple[int, int]) -> np.ndarray:
    """Scale an ``(x0, y0, x1, y1)`` pixel box of an ``original_hw`` image to model space.

    Each coordinate is multiplied by ``256 / max(H, W)`` and truncated to an integer, as the
    official ``resize_box_to_256``.
    """
    ratio = MODEL_INPUT_SIZE / max(original_hw)
    return np.array([int(v * ratio) for v in box], dtype=np.float64)


def points_to_model(points: np.ndarray, original_hw: tuple[int, int]) -> np.ndarray:
    """Scale ``(N, 2)`` pixel points (x, y) to model space (same factor as images; not truncated)."""
    return np.asarray(points, dtype=np.float64) * (MODEL_INPUT_SIZE / max(original_hw))


def box_from_mask_model(mask: np.ndarray, margin: int = 3) -> np.ndarray | None:
    """The official ``get_bbox256``: box of a mask resized to model space, enlarged by ``margin``.

    ``mask`` is the previous slice's mask at the original size (uint8; its values matter to
    ``INTER_AREA`` rounding exactly as in the official script). Returns ``None`` when the
    resized mask is empty.
    """
    small = resize_longest_side(mask)
    if np.max(small) == 0:
        return None
    small = pad_to_square(small)
    ys, xs = np.where(small > 0)
    h, w = small.shape
    return np.array([max(0, xs.min() - margin), max(0, ys.min() - margin),
                     min(w, xs.max() + margin), min(h, ys.max() + margin)], dtype=np.float64)


def logits_to_mask(low_res_logits: torch.Tensor, original_hw: tuple[int, int]) -> np.ndarray:
    """``(1, 1, 256, 256)`` logits -> uint8 mask ``[H, W]``: crop, bilinear resize, sigmoid > 0.5."""
    new_h, new_w = resized_shape(*original_hw)
    logits = low_res_logits[..., :new_h, :new_w]
    logits = F.interpolate(logits, size=original_hw, mode="bilinear", align_corners=False)
    return (torch.sigmoid(logits).squeeze().cpu().numpy() > 0.5).astype(np.uint8).reshape(original_hw)
