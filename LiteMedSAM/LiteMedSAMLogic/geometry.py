"""Geometry between Slicer's RAS space and a volume's voxel array (pure numpy, no MRML).

Conventions:

- A volume's voxel array is ``[k, j, i]`` (``slicer.util.arrayFromVolume``): array axis 0 is
  IJK axis 2 (k), array axis 2 is IJK axis 0 (i). IJK axis ``a`` is array axis ``2 - a``.
- Boxes are inclusive voxel indices ``(i0, j0, k0, i1, j1, k1)`` = the library's
  ``(x0, y0, z0, x1, y1, z1)``; a box covers the voxels whose CENTRES lie inside the ROI
  (``LiteMedSAMLib.boxes.box_from_index_corners``).
- The model segments 2D slices along array axis 0. To segment along another IJK axis, the
  array is transposed so that this axis comes first (:func:`slicingPermutation`) and the
  mask is transposed back (:func:`inversePermutation`).

All matrices are 4x4 numpy arrays (``slicer.util.arrayFromVTKMatrix``).
"""

from __future__ import annotations

import itertools

import numpy as np

from LiteMedSAMLib.boxes import box_from_index_corners, check_box
from LiteMedSAMLib.errors import LiteMedSAMError

IJK_AXIS_NAMES = ("I", "J", "K")


def roiCorners(objectToWorld: np.ndarray, size: tuple[float, float, float]) -> np.ndarray:
    """The 8 corners ``(8, 3)`` in world RAS of an ROI box.

    Args:
        objectToWorld: the ROI's object-to-world matrix (rotation, centre and any linear
            parent transform; ``vtkMRMLMarkupsROINode.GetObjectToWorldMatrix()``).
        size: the ROI's full edge lengths in its own coordinates (``GetSize()``), mm.
    """
    half = np.asarray(size, dtype=float) / 2.0
    signs = np.array(list(itertools.product((-1.0, 1.0), repeat=3)))
    corners = np.c_[signs * half, np.ones(8)]
    return (np.asarray(objectToWorld, dtype=float) @ corners.T).T[:, :3]


def rasToIjkPoints(points: np.ndarray, rasToIjk: np.ndarray) -> np.ndarray:
    """Map ``(N, 3)`` RAS points to continuous IJK indices ``(N, 3)``."""
    points = np.asarray(points, dtype=float).reshape(-1, 3)
    return (np.asarray(rasToIjk, dtype=float) @ np.c_[points, np.ones(len(points))].T).T[:, :3]


def voxelBoxFromRoi(cornersIjk: np.ndarray, shapeKji: tuple[int, ...],
                    name: str) -> tuple[tuple[int, int, int, int, int, int], list[str]]:
    """The inclusive voxel box ``(i0, j0, k0, i1, j1, k1)`` of the voxels inside an ROI.

    For an ROI that is not aligned with the voxel grid (oblique volume or rotated ROI) this is
    the box of voxels around the ROI's corners in index space. A box partly outside the volume
    is clipped (and a warning returned).

    Args:
        cornersIjk: ``(8, 3)`` ROI corners as continuous IJK indices of the volume
            (:func:`roiCorners` mapped with :func:`rasToIjkPoints`).
        shapeKji: the volume array's shape (``[k, j, i]``, extra trailing axes ignored).
        name: how messages call the ROI, e.g. ``"ROI 'Box 1'"``.

    Raises:
        LiteMedSAMError: the ROI does not intersect the volume, or is thinner than a voxel.
    """
    shape = [int(n) for n in shapeKji[:3]]
    try:
        box = box_from_index_corners(cornersIjk)
    except LiteMedSAMError as error:  # thinner than a voxel: say which ROI
        raise LiteMedSAMError(f"{name}: {error}") from None
    sizes = shape[::-1]  # voxels along I, J, K
    outside = [IJK_AXIS_NAMES[a] for a in range(3) if box[a + 3] < 0 or box[a] > sizes[a] - 1]
    if outside:
        raise LiteMedSAMError(
            f"{name} does not intersect the volume (voxels {box[:3]} to {box[3:]} along I, J, K; "
            f"the volume has {sizes[0]} x {sizes[1]} x {sizes[2]} voxels; outside along "
            f"{', '.join(outside)}). Move the box over the image, or pick the volume it was drawn on.")
    valid, warnings = check_box(box, shape, name=name)
    return valid.as_tuple(), warnings


def nearestIjkAxis(normalRas: np.ndarray, ijkToRas: np.ndarray) -> int:
    """The IJK axis (0 = I, 1 = J, 2 = K) most parallel to a direction given in RAS.

    Parallelism is measured in physical space (unit axis directions), so voxel spacing does
    not bias the choice; on a tie (a view at exactly 45 degrees) the later axis wins, which
    prefers K, the acquisition slice direction.
    """
    normal = np.asarray(normalRas, dtype=float)[:3]
    length = np.linalg.norm(normal)
    if not np.isfinite(length) or length == 0:
        raise LiteMedSAMError(f"slice normal {normal.tolist()} is not a direction")
    directions = np.asarray(ijkToRas, dtype=float)[:3, :3]
    directions = directions / np.linalg.norm(directions, axis=0)
    alignment = np.abs(directions.T @ (normal / length))
    return max(a for a in range(3) if alignment[a] >= alignment.max() - 1e-9)


def sliceIndexOnPlane(axis: int, planeNormalRas: np.ndarray, planePointRas: np.ndarray,
                      referencePointRas: np.ndarray, rasToIjk: np.ndarray) -> int:
    """The voxel slice index along IJK ``axis`` where a view plane passes a reference point.

    The reference point (e.g. the ROI centre) is projected onto the plane along the plane's
    normal; the slice is the nearest voxel centre of that projection along ``axis``. For a
    view aligned with the volume this is simply the slice the view shows.
    """
    normal = np.asarray(planeNormalRas, dtype=float)[:3]
    normal = normal / np.linalg.norm(normal)
    reference = np.asarray(referencePointRas, dtype=float)[:3]
    offset = float(np.dot(reference - np.asarray(planePointRas, dtype=float)[:3], normal))
    onPlane = reference - offset * normal
    return int(np.floor(rasToIjkPoints(onPlane, rasToIjk)[0, axis] + 0.5))


def slicingPermutation(axis: int) -> tuple[int, int, int]:
    """Array-axis permutation that puts IJK ``axis`` first in a ``[k, j, i]`` array.

    The other two axes keep their order: K -> ``(0, 1, 2)`` (``[k, j, i]``), J ->
    ``(1, 0, 2)`` (``[j, k, i]``), I -> ``(2, 0, 1)`` (``[i, k, j]``).
    """
    if axis not in (0, 1, 2):
        raise LiteMedSAMError(f"IJK axis must be 0, 1 or 2, got {axis!r}")
    first = 2 - axis
    return (first, *[a for a in (0, 1, 2) if a != first])


def inversePermutation(permutation: tuple[int, ...]) -> tuple[int, ...]:
    """The permutation that undoes ``permutation`` (for ``ndarray.transpose``)."""
    return tuple(int(a) for a in np.argsort(permutation))


def permuteArray(array: np.ndarray, permutation: tuple[int, int, int]) -> np.ndarray:
    """Transpose the three spatial axes of ``[k, j, i]`` or ``[k, j, i, c]`` (RGB) arrays."""
    return np.transpose(array, tuple(permutation) + tuple(range(3, np.ndim(array))))


def permuteBox(boxIjk: tuple[int, int, int, int, int, int],
               permutation: tuple[int, int, int]) -> tuple[int, int, int, int, int, int]:
    """Express an IJK voxel box in the axes of the permuted array (``(x0, y0, z0, x1, y1, z1)``
    with z = permuted array axis 0, y = axis 1, x = axis 2)."""
    low, high = boxIjk[:3], boxIjk[3:]
    ijkOf = [2 - a for a in permutation]  # IJK axis of permuted array axes 0 (z), 1 (y), 2 (x)
    z, y, x = ijkOf
    return (low[x], low[y], low[z], high[x], high[y], high[z])
