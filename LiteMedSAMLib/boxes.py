"""Box prompts: voxel-index boxes, their validation, and boxes given in physical space.

Conventions used throughout this module (and the rest of ``LiteMedSAMLib``):

- Image arrays are numpy arrays in SimpleITK order ``[z, y, x]`` (``k, j, i``).
- Box bounds are voxel indices ``(i, j, k) = (x, y, z)`` and INCLUSIVE on both ends, as the
  CVPR24 "MedSAM on laptop" challenge derives them from a mask with ``np.where``: the box
  ``x0=2, x1=5`` covers the four columns 2, 3, 4 and 5.
- Physical coordinates are LPS in millimetres (DICOM / ITK / NRRD files). Slicer's RAS is LPS
  with x and y negated.

A box given in physical space (a Slicer ROI, ``--box-mm`` on the command line) covers the voxels
whose CENTRES lie inside it; see :func:`box_from_index_corners`.
"""

from __future__ import annotations

import itertools
import json
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from LiteMedSAMLib.errors import LiteMedSAMError

__all__ = [
    "Box3D",
    "RoiBox",
    "SliceBox",
    "box2d_from_mask",
    "box_from_index_corners",
    "box_from_physical_corners",
    "box_from_physical_extent",
    "read_roi_file",
    "check_box",
    "check_box2d",
    "check_slice_box",
]

# Tolerance (in voxels) when deciding whether a voxel centre lies on a box face: a face that
# passes through a centre up to rounding error (e.g. 10.9999999 or 11.0000001) includes it.
_CENTRE_TOLERANCE = 1e-3

_AXES_3D = ("x", "y", "z")
_AXES_2D = ("x", "y")


def _as_index(value: object, what: str) -> int:
    """Return ``value`` as an ``int`` if it is an integral number, else raise.

    Accepts Python and numpy integers and integral floats (``3.0``); rejects bools, NaN,
    infinities, non-integral floats (``3.5``) and non-numbers.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise LiteMedSAMError(f"{what} must be an integer voxel index, got {value!r}.")
    as_float = float(value)
    if not math.isfinite(as_float) or as_float != math.floor(as_float):
        raise LiteMedSAMError(
            f"{what} must be an integer voxel index, got {value!r}. Box bounds are voxel "
            "indices; give a box in millimetres through the physical-box functions instead."
        )
    return int(as_float)


@dataclass(frozen=True)
class Box3D:
    """An axis-aligned box of voxels, with INCLUSIVE index bounds.

    ``x`` is the image column (SimpleITK index ``i``), ``y`` the row (``j``), ``z`` the slice
    (``k``). In a ``[z, y, x]`` array the box is ``array[z0:z1+1, y0:y1+1, x0:x1+1]``.

    The constructor only checks that the bounds are integers; :func:`check_box` checks
    them against an image (inverted axes, outside the image).
    """

    x0: int
    y0: int
    z0: int
    x1: int
    y1: int
    z1: int

    def __post_init__(self) -> None:
        for field_name in ("x0", "y0", "z0", "x1", "y1", "z1"):
            value = _as_index(getattr(self, field_name), f"Box3D.{field_name}")
            object.__setattr__(self, field_name, value)

    def as_tuple(self) -> tuple[int, int, int, int, int, int]:
        """The bounds as ``(x0, y0, z0, x1, y1, z1)``, the challenge's 3D box layout."""
        return (self.x0, self.y0, self.z0, self.x1, self.y1, self.z1)

    @property
    def box2d(self) -> tuple[int, int, int, int]:
        """The in-slice box ``(x0, y0, x1, y1)`` (inclusive), as the 2D model takes it."""
        return (self.x0, self.y0, self.x1, self.y1)

    @property
    def z_range(self) -> range:
        """The slice indices the box covers: ``range(z0, z1 + 1)``."""
        return range(self.z0, self.z1 + 1)

    @classmethod
    def from_mask(cls, mask: np.ndarray) -> Box3D:
        """The tight inclusive bounding box of the non-zero voxels of ``mask``.

        Args:
            mask: ``[z, y, x]`` array of any numeric or bool dtype; non-zero is foreground.

        Raises:
            LiteMedSAMError: if ``mask`` is not 3D or has no foreground voxel.
        """
        mask = np.asarray(mask)
        if mask.ndim != 3:
            raise LiteMedSAMError(
                f"Box3D.from_mask needs a 3D [z, y, x] mask, got shape {mask.shape}."
            )
        zs, ys, xs = np.nonzero(mask)
        if zs.size == 0:
            raise LiteMedSAMError("Cannot derive a box from an empty mask (no non-zero voxel).")
        return cls(int(xs.min()), int(ys.min()), int(zs.min()),
                   int(xs.max()), int(ys.max()), int(zs.max()))


@dataclass(frozen=True)
class SliceBox:
    """A 2D box drawn on one slice: a "2D start".

    The object is segmented on slice ``z`` inside ``(x0, y0, x1, y1)`` (inclusive pixel
    indices), then the sweep goes up and down from ``z`` until the object ends, never beyond
    ``z_min..z_max`` (inclusive; default: the whole volume). It spares the user a second view
    to set a 3D box's slice extent.
    """

    z: int
    x0: int
    y0: int
    x1: int
    y1: int
    z_min: int | None = None
    z_max: int | None = None

    def __post_init__(self) -> None:
        for field_name in ("z", "x0", "y0", "x1", "y1", "z_min", "z_max"):
            value = getattr(self, field_name)
            if value is not None:
                object.__setattr__(self, field_name, _as_index(value, f"SliceBox.{field_name}"))

    @property
    def box2d(self) -> tuple[int, int, int, int]:
        """The in-slice box ``(x0, y0, x1, y1)`` (inclusive)."""
        return (self.x0, self.y0, self.x1, self.y1)

    def bounds(self, n_slices: int) -> Box3D:
        """The 3D box the sweep may cover in a volume of ``n_slices`` slices."""
        z0 = 0 if self.z_min is None else self.z_min
        z1 = n_slices - 1 if self.z_max is None else self.z_max
        return Box3D(self.x0, self.y0, z0, self.x1, self.y1, z1)


def roi_start(box: Box3D) -> Box3D | SliceBox:
    """What an ROI's voxel box asks for in a 3D image: an ROI that spans a single slice is a 2D
    start (a box drawn on that slice, swept until the object ends), any other a 3D box. The
    command line and batch manifests both read ROI files through this rule."""
    if box.z0 == box.z1:
        return SliceBox(box.z0, box.x0, box.y0, box.x1, box.y1)
    return box


def check_slice_box(box: SliceBox, image_shape_zyx: Sequence[int], *,
                       name: str = "box") -> tuple[SliceBox, list[str]]:
    """Check a :class:`SliceBox` against an image: its slice must exist and lie within its own
    ``z_min..z_max``; the in-slice box is clipped like :func:`check_box2d`."""
    nz, ny, nx = _check_shape(image_shape_zyx, 3, "image_shape_zyx")
    if not 0 <= box.z < nz:
        raise LiteMedSAMError(f"{name}: slice {box.z} is outside the image (slices 0..{nz - 1})")
    bounds = box.bounds(nz)
    z0, z1 = max(bounds.z0, 0), min(bounds.z1, nz - 1)
    if not z0 <= box.z <= z1:
        raise LiteMedSAMError(f"{name}: its slice {box.z} is outside its own slice range {bounds.z0}..{bounds.z1}")
    box2d, warnings = check_box2d(box.box2d, (ny, nx), name=name)
    return SliceBox(box.z, *box2d, z_min=z0, z_max=z1), warnings


def box2d_from_mask(mask: np.ndarray) -> tuple[int, int, int, int]:
    """The tight inclusive bounding box ``(x0, y0, x1, y1)`` of the non-zero pixels of a 2D mask.

    Args:
        mask: ``[y, x]`` array; non-zero is foreground.

    Raises:
        LiteMedSAMError: if ``mask`` is not 2D or is empty.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise LiteMedSAMError(f"box2d_from_mask needs a 2D [y, x] mask, got shape {mask.shape}.")
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise LiteMedSAMError("Cannot derive a box from an empty mask (no non-zero pixel).")
    return (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))


# ---------------------------------------------------------------------------------------------
# Validation against an image


def _coerce_bounds(box: object, n_axes: int, name: str) -> tuple[list[int], list[int]]:
    """Split a box given as ``Box3D`` or a flat sequence into lower and upper index lists."""
    if isinstance(box, Box3D):
        values: Sequence[object] = box.as_tuple()
    elif isinstance(box, (str, bytes)) or not isinstance(box, (Sequence, np.ndarray)):
        raise LiteMedSAMError(
            f"{name} must be a sequence of {2 * n_axes} voxel indices, got {type(box).__name__}."
        )
    elif isinstance(box, np.ndarray):
        values = box.tolist() if box.ndim == 1 else [box.tolist()]
    else:
        values = list(box)
    if len(values) != 2 * n_axes:
        layout = "(x0, y0, z0, x1, y1, z1)" if n_axes == 3 else "(x0, y0, x1, y1)"
        raise LiteMedSAMError(
            f"{name} must have {2 * n_axes} numbers {layout}, got {len(values)}: {values!r}."
        )
    axes = _AXES_3D[:n_axes]
    lows = [_as_index(v, f"{name} {axes[a]}0") for a, v in enumerate(values[:n_axes])]
    highs = [_as_index(v, f"{name} {axes[a]}1") for a, v in enumerate(values[n_axes:])]
    return lows, highs


def _check_shape(shape: Sequence[int], n_axes: int, what: str) -> list[int]:
    """Return the image shape as ints (array order, e.g. ``[z, y, x]``), or raise."""
    shape = list(shape)
    if len(shape) != n_axes or any(not isinstance(s, numbers.Integral) or s < 1 for s in shape):
        raise LiteMedSAMError(f"{what} must be {n_axes} positive integers, got {shape!r}.")
    return [int(s) for s in shape]


def _check_bounds(lows: list[int], highs: list[int], sizes_xyz: list[int],
                     name: str) -> tuple[list[int], list[int], list[str]]:
    """Check inclusive bounds against an image of ``sizes_xyz`` voxels; clip if partly outside.

    Returns the (possibly clipped) lower and upper bounds and a list of warning messages.
    """
    axes = _AXES_3D[:len(lows)]
    given = ", ".join(f"{a}0={lo}, {a}1={hi}" for a, lo, hi in zip(axes, lows, highs))
    inverted = [a for a, lo, hi in zip(axes, lows, highs) if hi < lo]
    if inverted:
        raise LiteMedSAMError(
            f"{name} is inverted along {' and '.join(inverted)} (upper bound below lower bound): "
            f"{given}. Bounds are inclusive voxel indices, lower first."
        )
    size_text = " x ".join(f"{a}={n}" for a, n in zip(axes, sizes_xyz))
    outside = [a for a, lo, hi, n in zip(axes, lows, highs, sizes_xyz) if hi < 0 or lo > n - 1]
    if outside:
        valid = ", ".join(f"{a} 0..{n - 1}" for a, n in zip(axes, sizes_xyz))
        raise LiteMedSAMError(
            f"{name} ({given}) lies entirely outside the image along {' and '.join(outside)}; "
            f"the image is {size_text} voxels (valid indices {valid})."
        )
    clipped_lows = [max(lo, 0) for lo in lows]
    clipped_highs = [min(hi, n - 1) for hi, n in zip(highs, sizes_xyz)]
    warnings: list[str] = []
    if clipped_lows != lows or clipped_highs != highs:
        new = ", ".join(f"{a}0={lo}, {a}1={hi}"
                        for a, lo, hi in zip(axes, clipped_lows, clipped_highs))
        warnings.append(
            f"{name} ({given}) extends outside the image ({size_text} voxels); "
            f"it was clipped to {new}."
        )
    return clipped_lows, clipped_highs, warnings


def check_box(box: Box3D | Sequence[float], image_shape_zyx: Sequence[int], *,
                 name: str = "box") -> tuple[Box3D, list[str]]:
    """Check a 3D box against an image and clip it to the image if it sticks out.

    Args:
        box: a :class:`Box3D` or 6 numbers ``(x0, y0, z0, x1, y1, z1)``: inclusive voxel
            indices; integral floats such as ``4.0`` are accepted.
        image_shape_zyx: the image array shape ``(nz, ny, nx)``.
        name: how messages call the box (e.g. ``"box 2"``).

    Returns:
        The valid box (clipped to the image where it was partly outside) and a list of
        warning messages (empty, or one message saying what was clipped).

    Raises:
        LiteMedSAMError: non-integral bounds, an inverted axis, or a box entirely outside.
    """
    nz, ny, nx = _check_shape(image_shape_zyx, 3, "image_shape_zyx")
    lows, highs = _coerce_bounds(box, 3, name)
    lows, highs, warnings = _check_bounds(lows, highs, [nx, ny, nz], name)
    return Box3D(*lows, *highs), warnings


def check_box2d(box: Sequence[float], image_shape_yx: Sequence[int], *,
                   name: str = "box") -> tuple[tuple[int, int, int, int], list[str]]:
    """Check a 2D box ``(x0, y0, x1, y1)`` against a 2D image or slice; clip if partly outside.

    Same rules and messages as :func:`check_box`.

    Args:
        box: 4 inclusive pixel indices ``(x0, y0, x1, y1)``.
        image_shape_yx: the image (or slice) array shape ``(ny, nx)``.
        name: how messages call the box.

    Returns:
        ``((x0, y0, x1, y1), warnings)``.
    """
    ny, nx = _check_shape(image_shape_yx, 2, "image_shape_yx")
    lows, highs = _coerce_bounds(box, 2, name)
    lows, highs, warnings = _check_bounds(lows, highs, [nx, ny], name)
    return (lows[0], lows[1], highs[0], highs[1]), warnings


# ---------------------------------------------------------------------------------------------
# Boxes in physical space


def box_from_index_corners(corners_ijk: np.ndarray) -> tuple[int, int, int, int, int, int]:
    """The voxels whose centres lie inside the axis-aligned hull of continuous-index points.

    Pure numpy, so any caller with its own physical-to-index mapping (e.g. Slicer's RAS-to-IJK
    matrix) can use it. Per axis, with ``[a, b]`` the range of the corners' continuous indices,
    the inclusive voxel range is ``ceil(a - 1e-3) .. floor(b + 1e-3)``; voxel ``n``'s centre is
    at continuous index ``n``.

    Args:
        corners_ijk: ``(N, 3)`` float array of continuous indices ``(i, j, k)`` = ``(x, y, z)``,
            e.g. the 8 corners of an ROI.

    Returns:
        ``(x0, y0, z0, x1, y1, z1)``, not clipped to any image.

    Raises:
        LiteMedSAMError: bad array shape, non-finite values, or a box so thin along an axis
            that no voxel centre lies inside it.
    """
    corners = np.asarray(corners_ijk, dtype=float)
    if corners.ndim != 2 or corners.shape[1] != 3 or corners.shape[0] < 1:
        raise LiteMedSAMError(f"Box corners must be an (N, 3) array, got shape {corners.shape}.")
    if not np.all(np.isfinite(corners)):
        raise LiteMedSAMError("Box corners contain NaN or infinite coordinates.")
    lows = corners.min(axis=0)
    highs = corners.max(axis=0)
    first = [int(math.ceil(a - _CENTRE_TOLERANCE)) for a in lows]
    last = [int(math.floor(b + _CENTRE_TOLERANCE)) for b in highs]
    thin = [f"{axis} (index {a:.3f} to {b:.3f})"
            for axis, a, b, i0, i1 in zip(_AXES_3D, lows, highs, first, last) if i1 < i0]
    if thin:
        raise LiteMedSAMError(
            f"The box is thinner than one voxel along {', '.join(thin)}: no voxel centre lies "
            "inside it. Make the box larger along that axis."
        )
    return (first[0], first[1], first[2], last[0], last[1], last[2])


def _require_3d(image: sitk.Image, what: str) -> None:
    if not isinstance(image, sitk.Image):
        raise LiteMedSAMError(f"{what} needs a SimpleITK.Image, got {type(image).__name__}.")
    if image.GetDimension() != 3:
        raise LiteMedSAMError(
            f"{what} needs a 3D image; this image is {image.GetDimension()}D. "
            "Give 2D boxes in pixel indices."
        )


def box_from_physical_corners(corners_lps: np.ndarray, image: sitk.Image) -> Box3D:
    """The voxel box covering the voxel centres inside a box given by physical corner points.

    Each corner is mapped to a continuous index with the image's own geometry
    (``TransformPhysicalPointToContinuousIndex``: origin, spacing, direction), then
    :func:`box_from_index_corners` picks the voxels. For an oblique box or image the result is
    the index-space bounding box of the corners. The result is NOT clipped: pass it to
    :func:`check_box` with the image shape.

    Args:
        corners_lps: ``(N, 3)`` physical points in LPS millimetres (e.g. ``RoiBox.corners_lps``).
        image: the 3D image the box refers to.
    """
    _require_3d(image, "box_from_physical_corners")
    corners = np.asarray(corners_lps, dtype=float)
    if corners.ndim != 2 or corners.shape[1] != 3 or corners.shape[0] < 1:
        raise LiteMedSAMError(
            f"Physical box corners must be an (N, 3) LPS array, got shape {corners.shape}."
        )
    if not np.all(np.isfinite(corners)):
        raise LiteMedSAMError("Physical box corners contain NaN or infinite coordinates.")
    indices = np.array([image.TransformPhysicalPointToContinuousIndex([float(c) for c in p])
                        for p in corners])
    return Box3D(*box_from_index_corners(indices))


def box_from_physical_extent(lps_min: Sequence[float], lps_max: Sequence[float],
                             image: sitk.Image) -> Box3D:
    """The voxel box for an axis-aligned box in LPS millimetres (the CLI's ``--box-mm``).

    Args:
        lps_min: ``(L, P, S)`` of one corner, in mm.
        lps_max: ``(L, P, S)`` of the opposite corner, each coordinate >= the one in lps_min.
        image: the 3D image the box refers to.

    Returns:
        The unclipped :class:`Box3D` of voxels whose centres lie in the box (see
        :func:`box_from_physical_corners`).
    """
    low = np.asarray(lps_min, dtype=float).ravel()
    high = np.asarray(lps_max, dtype=float).ravel()
    if low.shape != (3,) or high.shape != (3,):
        raise LiteMedSAMError(
            f"A physical box needs 3 minimum and 3 maximum LPS coordinates (mm), got "
            f"{low.size} and {high.size}."
        )
    inverted = [axis for axis, a, b in zip("LPS", low, high) if b < a]
    if inverted:
        raise LiteMedSAMError(
            f"The physical box is inverted along {', '.join(inverted)}: the maximum "
            f"{high.tolist()} is below the minimum {low.tolist()} (LPS mm)."
        )
    corners = np.array([[high[a] if pick else low[a] for a, pick in enumerate(choice)]
                        for choice in itertools.product((0, 1), repeat=3)])
    return box_from_physical_corners(corners, image)


# ---------------------------------------------------------------------------------------------
# Slicer markups ROI files


@dataclass(frozen=True)
class RoiBox:
    """An ROI read from a Slicer markups file.

    Attributes:
        name: the markup's name, or the file's name when the markup has none.
        corners_lps: ``(8, 3)`` float array, the ROI's corners in LPS mm, in the order
            ``center + axes @ (s * size / 2)`` for ``s`` in ``itertools.product((-1, 1),
            repeat=3)``.
    """

    name: str
    corners_lps: np.ndarray


def _number_list(value: object, count: int, what: str, path: Path) -> np.ndarray:
    """A JSON list of ``count`` finite numbers as a float array, or a clear error."""
    if (not isinstance(value, list) or len(value) != count
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise LiteMedSAMError(f"{path}: '{what}' must be a list of {count} numbers, got {value!r}.")
    array = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(array)):
        raise LiteMedSAMError(f"{path}: '{what}' contains NaN or infinite values.")
    return array


def _roi_center(markup: dict, path: Path) -> np.ndarray:
    """The ROI centre in the file's coordinate system: ``center``, else its one control point."""
    if "center" in markup:
        return _number_list(markup["center"], 3, "center", path)
    points = markup.get("controlPoints") or []
    if len(points) == 1 and isinstance(points[0], dict) and "position" in points[0]:
        return _number_list(points[0]["position"], 3, "controlPoints[0].position", path)
    raise LiteMedSAMError(
        f"{path}: the ROI has no 'center' and not exactly one control point to take it from."
    )


def _roi_from_markup(markup: dict, path: Path) -> RoiBox:
    """Build an :class:`RoiBox` (corners in LPS) from one ``"type": "ROI"`` markup."""
    system = markup.get("coordinateSystem", "LPS") or "LPS"
    if system not in ("LPS", "RAS"):
        raise LiteMedSAMError(
            f"{path}: unknown coordinateSystem {system!r}; expected 'LPS' or 'RAS'."
        )
    units = markup.get("coordinateUnits", "mm")
    if units not in ("mm", "", None):
        raise LiteMedSAMError(f"{path}: coordinateUnits {units!r} is not supported, only 'mm'.")
    center = _roi_center(markup, path)
    if "size" not in markup:
        raise LiteMedSAMError(f"{path}: the ROI has no 'size'.")
    size = _number_list(markup["size"], 3, "size", path)
    if np.any(size < 0):
        raise LiteMedSAMError(f"{path}: the ROI 'size' {size.tolist()} has a negative edge.")
    # 'orientation' is the ROI-to-node matrix, row-major: its COLUMNS are the ROI axes.
    orientation = np.eye(3)
    if "orientation" in markup:
        orientation = _number_list(markup["orientation"], 9, "orientation", path).reshape(3, 3)
    if system == "RAS":
        flip = np.diag([-1.0, -1.0, 1.0])
        center = flip @ center
        orientation = flip @ orientation
    signs = np.array(list(itertools.product((-1.0, 1.0), repeat=3)))
    corners = center + (signs * (size / 2.0)) @ orientation.T
    return RoiBox(name=str(markup.get("name") or ""), corners_lps=corners)


def _default_roi_name(path: Path, index: int, count: int) -> str:
    """The name Slicer gives a loaded markup without a name: the file name less its suffix."""
    stem = path.name
    for suffix in (".mrk.json", ".json"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return stem if count == 1 else f"{stem} {index + 1}"


def read_roi_file(path: str | Path) -> list[RoiBox]:
    """Read every ROI in a Slicer markups JSON file (``.mrk.json``).

    Follows Slicer's ``vtkMRMLMarkupsROIJsonStorageNode``: ``center`` and ``size`` (full edge
    lengths, mm) in the markup's ``coordinateSystem`` ("LPS", the default, or "RAS");
    ``orientation`` is the 3x3 ROI-to-node matrix written row by row, whose columns are the
    ROI axes (identity if absent). If ``center`` is absent, the single control point's
    position is used. Any parent transform in a Slicer scene is not part of the file.
    Slicer does not write the node name into the file: a markup without ``name`` is named
    after the file, as Slicer names the node it loads (``tumour.mrk.json`` -> ``tumour``;
    ``tumour 1``, ``tumour 2``... when the file holds several).

    Args:
        path: the ``.mrk.json`` file.

    Returns:
        One :class:`RoiBox` per markup, corners in LPS.

    Raises:
        LiteMedSAMError: missing or malformed file, a markup that is not an ROI, no markup.
    """
    path = Path(path)
    if not path.is_file():
        raise LiteMedSAMError(f"ROI file not found: {path}")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise LiteMedSAMError(f"{path} is not a readable JSON markups file: {error}") from None
    markups = document.get("markups") if isinstance(document, dict) else None
    if not isinstance(markups, list) or not markups:
        raise LiteMedSAMError(
            f"{path} is not a Slicer markups file: it has no non-empty 'markups' list."
        )
    rois = []
    for index, markup in enumerate(markups):
        kind = markup.get("type") if isinstance(markup, dict) else None
        if kind != "ROI":
            raise LiteMedSAMError(
                f"{path}: markup {index + 1} is of type {kind!r}, not an ROI. Save the box as a "
                "Slicer ROI (Markups > ROI)."
            )
        roi = _roi_from_markup(markup, path)
        if not roi.name:
            roi = RoiBox(_default_roi_name(path, index, len(markups)), roi.corners_lps)
        rois.append(roi)
    return rois
