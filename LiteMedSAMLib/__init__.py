"""LiteMedSAMLib: box-prompted, laptop-speed medical image segmentation (LiteMedSAM family).

Runs without Slicer or Qt. Typical use::

    from LiteMedSAMLib import segment_image
    masks, predictor = segment_image(sitk_image, [(x0, y0, z0, x1, y1, z1)], preset="ct")

or, keeping one predictor for many boxes::

    from LiteMedSAMLib import load_model, VolumePredictor, segment_volume
    predictor = VolumePredictor(load_model("litemedsam"))
    predictor.set_volume(array_zyx, preset="ct", slice_spacing=spacing_mm)
    masks = segment_volume(predictor, [(x0, y0, z0, x1, y1, z1)])

Heavy imports (torch) happen when the model or predictor modules are used, so that
``import LiteMedSAMLib`` alone stays cheap for the Slicer module.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .errors import LiteMedSAMError

__version__ = "0.1.0"

_LAZY = {
    "load_model": "registry", "available_models": "registry", "get_spec": "registry",
    "VolumePredictor": "predictor", "SlicePrediction": "predictor",
    "segment_volume": "propagation", "segment_slice": "propagation",
    "SegmentationCancelled": "errors",
    "Box3D": "boxes", "SliceBox": "boxes",
    "segment_image": "segmentation",
    "RefinementSession": "refinement", "Prompt": "refinement",
    "evaluate_clicks": "evaluation.clicks", "next_click": "evaluation.clicks",
}

__all__ = ["LiteMedSAMError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
