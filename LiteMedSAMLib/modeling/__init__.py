"""Network definitions (PyTorch modules) of the LiteMedSAM model family."""

from .lite_medsam import ENCODERS, LiteMedSAM, build_lite_medsam

__all__ = ["ENCODERS", "LiteMedSAM", "build_lite_medsam"]
