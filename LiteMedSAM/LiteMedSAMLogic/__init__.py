"""The Qt-free part of the LiteMedSAM Slicer module: logic, geometry, dependencies, worker.

Importing this package imports neither Qt nor torch (torch is imported when a model runs).
"""

from .logic import PRESET_NAMES, BoxTask, LiteMedSAMLogic, SegmentationJob, createRoiFromVoxelBox

__all__ = ["PRESET_NAMES", "BoxTask", "LiteMedSAMLogic", "SegmentationJob", "createRoiFromVoxelBox"]
