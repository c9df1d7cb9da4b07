"""Intensity presets: names and CT windows (no heavy imports, so the Slicer GUI can list them).

The rules themselves live in :mod:`LiteMedSAMLib.preprocessing`.
"""

from __future__ import annotations

# Window presets as (width, level) in Hounsfield units. "ct" is the official default (W400/L40).
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "ct": (400.0, 40.0),
    "ct-soft-tissue": (400.0, 40.0),
    "ct-lung": (1500.0, -600.0),
    "ct-bone": (1800.0, 400.0),
    "ct-brain": (80.0, 40.0),
}
PRESETS = ("auto", *CT_WINDOWS, "mr", "none")
PRESET_HELP = (
    "auto: uint8 images as they are, CT (minimum <= -500) with ct, else mr; "
    + ", ".join(f"{name}: W{w:g}/L{lvl:g}" for name, (w, lvl) in CT_WINDOWS.items())
    + "; mr: 0.5-99.5 percentile of non-zero voxels; none: image already uint8 0-255"
)
