"""Test volumes with non-identity geometry, made from the real MNI152 T1 template."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

# Crop of the template around the lateral ventricles (template index ranges, inclusive start).
CROP_START = (50, 70, 90)  # (x, y, z)
CROP_SIZE = (100, 100, 10)
# The two lateral ventricles in the crop, as inclusive voxel boxes (i0, j0, k0, i1, j1, k1).
LEFT_VENTRICLE = (26, 26, 3, 44, 73, 7)
RIGHT_VENTRICLE = (52, 26, 3, 70, 73, 7)


def rotation(axis: str, degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    a, b = {"x": (1, 2), "y": (0, 2), "z": (0, 1)}[axis]
    matrix = np.eye(3)
    matrix[a, a], matrix[a, b], matrix[b, a], matrix[b, b] = c, -s, s, c
    return matrix


def cropped(template: sitk.Image) -> sitk.Image:
    return sitk.RegionOfInterest(template, CROP_SIZE, CROP_START)


def withGeometry(image: sitk.Image, spacing=(0.9, 1.1, 1.3), origin=(-30.5, 12.25, 40.0),
                 direction: np.ndarray | None = None) -> sitk.Image:
    """A copy of ``image`` (same voxels) with new spacing, origin and direction (LPS)."""
    result = sitk.Image(image)
    result.SetSpacing(spacing)
    result.SetOrigin(origin)
    if direction is None:  # the template's own axes (x to the left... as in LPS files from MNI)
        direction = np.diag([-1.0, -1.0, 1.0])
    result.SetDirection(np.asarray(direction, dtype=float).ravel().tolist())
    return result


def oblique(template: sitk.Image) -> sitk.Image:
    """The crop, tilted 20 degrees about L-R and 10 about S-I, anisotropic spacing."""
    direction = rotation("z", 10) @ rotation("x", 20) @ np.diag([-1.0, -1.0, 1.0])
    return withGeometry(cropped(template), direction=direction)


def sagittal(template: sitk.Image) -> sitk.Image:
    """A sagittal acquisition of the same anatomy: slices (k) run left-right, i is A-P, j is S-I."""
    image = withGeometry(cropped(template), spacing=(0.9, 1.1, 1.3))
    return sitk.PermuteAxes(image, [1, 2, 0])


def save(image: sitk.Image, path: Path) -> Path:
    sitk.WriteImage(image, str(path))
    return path


def load(path: Path, name: str):
    import slicer

    node = slicer.modules.volumes.logic().AddArchetypeVolume(str(path), name)
    assert node is not None, f"could not load {path}"
    return node
