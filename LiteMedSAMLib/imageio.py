"""Reading images and writing segmentations, with the checks a user needs explained.

- :func:`read_image`: any file SimpleITK reads (NRRD, NIfTI, MetaImage, a single DICOM file,
  PNG...) or a folder holding a DICOM series. The image is returned as read; input files are
  never modified.
- :func:`check_image`: accepts 2D grayscale, 2D RGB(A), 3D grayscale and 3D RGB(A) (a stack of
  RGB slices); rejects 4D, multi-component, empty and NaN/inf images with a clear message.
- :func:`write_segmentation`: masks to a Slicer segmentation (``.seg.nrrd``: one named,
  coloured segment per mask, overlaps kept) or to a labelmap (``.nii.gz``, ``.nii``,
  ``.nrrd``, ``.mha``, ``.mhd``: label ``i + 1`` for mask ``i``).

Arrays are numpy ``[z, y, x]`` (``[y, x]`` for 2D), as ``SimpleITK.GetArrayFromImage`` gives
them; physical space is LPS (mm).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from LiteMedSAMLib.colors import SEGMENT_COLORS
from LiteMedSAMLib.errors import LiteMedSAMError

__all__ = [
    "DEFAULT_COLORS",
    "read_segments",
    "DicomSeriesInfo",
    "ImageInfo",
    "check_image",
    "list_dicom_series",
    "read_image",
    "remove_stale_temporaries",
    "write_segmentation",
]

logger = logging.getLogger(__name__)

# The shared segment palette (LiteMedSAMLib.colors): mask i gets colour i modulo its length.
DEFAULT_COLORS = SEGMENT_COLORS

_LABELMAP_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
_SEGMENTATION_SUFFIX = ".seg.nrrd"
# Outputs are first written into a folder "<prefix><pid>-<random>" beside the output, then renamed.
TEMPORARY_PREFIX = ".litemedsam-tmp-"


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class DicomSeriesInfo:
    """One DICOM series found in a folder."""

    series_id: str  # Series Instance UID
    description: str  # Series Description (0008,103E); empty if absent
    n_files: int


def _itk_reason(error: RuntimeError) -> str:
    """The useful last line of an ITK exception message."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"


def _series_description(first_file: str) -> str:
    reader = sitk.ImageFileReader()
    reader.SetFileName(first_file)
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return ""
    key = "0008|103e"
    return reader.GetMetaData(key).strip() if reader.HasMetaDataKey(key) else ""


def list_dicom_series(folder: str | Path) -> list[DicomSeriesInfo]:
    """The DICOM series directly inside ``folder`` (sub-folders are not searched).

    Returns:
        One :class:`DicomSeriesInfo` per series, most files first.
    """
    folder = Path(folder)
    infos = []
    # GDCM warns on stderr, in ITK's words, when a folder holds no series: our caller says it
    # in ours (the display setting is process-wide, so it is put back as it was)
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)
    for series_id in series_ids:
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_id)
        infos.append(DicomSeriesInfo(series_id, _series_description(files[0]) if files else "",
                                     len(files)))
    return sorted(infos, key=lambda info: -info.n_files)


def _describe_series(infos: Sequence[DicomSeriesInfo]) -> str:
    return "; ".join(f"{info.series_id} ('{info.description}', {info.n_files} files)"
                     for info in infos)


def _read_dicom_folder(folder: Path, series_id: str | None) -> sitk.Image:
    """Read one DICOM series from a folder: ``series_id``, or the one with the most files."""
    infos = list_dicom_series(folder)
    if not infos:
        raise LiteMedSAMError(
            f"No DICOM series found in folder {folder}. Give an image file, or a folder that "
            "directly holds the DICOM files of one series."
        )
    if series_id is not None:
        chosen = [info for info in infos if info.series_id == series_id]
        if not chosen:
            raise LiteMedSAMError(
                f"DICOM series {series_id!r} is not in {folder}. Series found: "
                f"{_describe_series(infos)}."
            )
        info = chosen[0]
    else:
        info = infos[0]
        if len(infos) > 1:
            logger.warning(
                "%s holds %d DICOM series; reading %s ('%s', %d files), the one with the most "
                "files. Choose another with series_id. All series: %s",
                folder, len(infos), info.series_id, info.description, info.n_files,
                _describe_series(infos))
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), info.series_id)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        return reader.Execute()
    except RuntimeError as error:
        raise LiteMedSAMError(
            f"Could not read DICOM series {info.series_id} in {folder}: {_itk_reason(error)}"
        ) from None


def read_image(path: str | Path, *, series_id: str | None = None) -> sitk.Image:
    """Read an image file, or a DICOM series from a folder.

    Args:
        path: an image file SimpleITK can read (``.nrrd``, ``.nii.gz``, ``.mha``, a single
            DICOM file, ...) or a folder directly holding DICOM files.
        series_id: for a folder with several DICOM series, the Series Instance UID to read
            (see :func:`list_dicom_series`). Without it the series with the most files is read
            and a warning naming it and the others is logged (logger
            ``LiteMedSAMLib.imageio``).

    Returns:
        The image exactly as read (pixel type, geometry and metadata untouched). Use
        :func:`check_image` to check it is usable.

    Raises:
        LiteMedSAMError: missing path, unreadable file, no or unknown DICOM series.
    """
    path = Path(path)
    if not path.exists():
        raise LiteMedSAMError(f"Image not found: {path}")
    if path.is_dir():
        return _read_dicom_folder(path, series_id)
    if series_id is not None:
        raise LiteMedSAMError(
            f"series_id applies to DICOM folders only, but {path} is a file."
        )
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise LiteMedSAMError(
            f"Could not read {path} as an image: {_itk_reason(error)}"
        ) from None


# ---------------------------------------------------------------------------------------------
# Checking


@dataclass(frozen=True)
class ImageInfo:
    """What kind of image :func:`check_image` accepted.

    Attributes:
        dimension: 2 or 3 (spatial dimensions).
        is_rgb: True for 3- or 4-component uint8 pixels (RGB / RGBA); a 3D RGB image is a
            stack of RGB slices.
        shape: the array shape without colour components: ``(nz, ny, nx)`` or ``(ny, nx)``.
    """

    dimension: int
    is_rgb: bool
    shape: tuple[int, ...]


_COMPLEX_TYPES = {sitk.sitkComplexFloat32, sitk.sitkComplexFloat64}
_FLOAT_TYPES = {sitk.sitkFloat32, sitk.sitkFloat64, sitk.sitkVectorFloat32,
                sitk.sitkVectorFloat64}


def check_image(image: sitk.Image) -> ImageInfo:
    """Check that an image can be segmented, and say what kind it is.

    Accepted: 2D or 3D, grayscale (one component of any real type) or RGB/RGBA (3 or 4
    ``uint8`` components). Rejected, with a message saying why: 4D and higher images, other
    multi-component images (e.g. a time series or diffusion data stored as vector pixels),
    complex pixels, images with a zero-sized axis, and images with NaN or infinite voxels.

    Raises:
        LiteMedSAMError: the image is not usable.
    """
    if not isinstance(image, sitk.Image):
        raise LiteMedSAMError(f"Expected a SimpleITK.Image, got {type(image).__name__}.")
    size = image.GetSize()
    dimension = image.GetDimension()
    if dimension > 3:
        raise LiteMedSAMError(
            f"{dimension}D images are not supported (size {size}); extract one 3D volume "
            "(e.g. one time point) first."
        )
    if dimension < 2:
        raise LiteMedSAMError(f"{dimension}D images are not supported; need a 2D or 3D image.")
    if any(n == 0 for n in size):
        raise LiteMedSAMError(f"The image is empty: its size is {size} voxels.")
    pixel_id = image.GetPixelID()
    components = image.GetNumberOfComponentsPerPixel()
    if pixel_id in _COMPLEX_TYPES:
        raise LiteMedSAMError(
            f"Complex-valued images are not supported ({image.GetPixelIDTypeAsString()})."
        )
    is_rgb = components in (3, 4) and pixel_id == sitk.sitkVectorUInt8
    if components > 1 and not is_rgb:
        raise LiteMedSAMError(
            f"The image has {components} components per voxel "
            f"({image.GetPixelIDTypeAsString()}); only grayscale images and RGB/RGBA images "
            "with 8-bit channels are supported. A time series or multi-channel volume must be "
            "split into single 3D volumes first."
        )
    if pixel_id in _FLOAT_TYPES:
        _check_finite(sitk.GetArrayViewFromImage(image))
    return ImageInfo(dimension=dimension, is_rgb=is_rgb, shape=tuple(reversed(size)))


def _check_finite(array: np.ndarray) -> None:
    finite = np.isfinite(array)
    if not finite.all():
        n_nan = int(np.isnan(array).sum())
        n_inf = int(finite.size - finite.sum()) - n_nan
        raise LiteMedSAMError(
            f"The image has {n_nan + n_inf} voxels that are not finite numbers ({n_nan} NaN, "
            f"{n_inf} infinite) out of {array.size}. Replace them (e.g. with the minimum "
            "intensity) before segmenting."
        )


# ---------------------------------------------------------------------------------------------
# Writing


def _spatial_shape(reference: sitk.Image) -> tuple[int, ...]:
    if not isinstance(reference, sitk.Image):
        raise LiteMedSAMError(
            f"The reference must be a SimpleITK.Image, got {type(reference).__name__}."
        )
    if reference.GetDimension() not in (2, 3):
        raise LiteMedSAMError(
            f"The reference image must be 2D or 3D, not {reference.GetDimension()}D."
        )
    return tuple(reversed(reference.GetSize()))


def _check_masks(masks: Sequence[np.ndarray], shape: tuple[int, ...]) -> list[np.ndarray]:
    """Each mask as a bool array of the reference's ``shape``, or a clear error."""
    if isinstance(masks, np.ndarray):
        raise LiteMedSAMError("masks must be a sequence of arrays (one per segment), "
                              "not a single array; wrap it in a list.")
    if len(masks) == 0:
        raise LiteMedSAMError("No masks to write.")
    checked = []
    for index, mask in enumerate(masks):
        mask = np.asarray(mask)
        if mask.shape != shape:
            raise LiteMedSAMError(
                f"Mask {index + 1} has shape {mask.shape}, but the reference image's array "
                f"shape is {shape} ([z, y, x])."
            )
        if mask.dtype != bool:
            if not np.issubdtype(mask.dtype, np.integer):
                raise LiteMedSAMError(
                    f"Mask {index + 1} has dtype {mask.dtype}; use bool or uint8 (0/1)."
                )
            if mask.size and (mask.min() < 0 or mask.max() > 1):
                raise LiteMedSAMError(
                    f"Mask {index + 1} has values other than 0 and 1 (range {mask.min()}.."
                    f"{mask.max()}); masks are binary, one per segment."
                )
        checked.append(mask.astype(bool, copy=False))
    return checked


def _check_names(names: Sequence[str], count: int) -> list[str]:
    if isinstance(names, str):
        raise LiteMedSAMError("names must be a sequence of strings, one per mask.")
    names = list(names)
    if len(names) != count:
        raise LiteMedSAMError(f"Got {count} masks but {len(names)} names.")
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise LiteMedSAMError(f"Segment names must be non-empty strings, got {name!r}.")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise LiteMedSAMError(f"Segment names must be unique; repeated: {duplicates}.")
    return names


def _check_colors(colors: Sequence[Sequence[float]] | None,
                  count: int) -> list[tuple[float, float, float]]:
    if colors is None:
        return [DEFAULT_COLORS[i % len(DEFAULT_COLORS)] for i in range(count)]
    colors = list(colors)
    if len(colors) != count:
        raise LiteMedSAMError(f"Got {count} masks but {len(colors)} colors.")
    checked = []
    for color in colors:
        values = np.asarray(color, dtype=float).ravel() if _is_numeric(color) else None
        if values is None or values.size != 3 or np.any(values < 0) or np.any(values > 1):
            raise LiteMedSAMError(
                f"Colors must be (r, g, b) with each value in [0, 1], got {color!r}."
            )
        checked.append((float(values[0]), float(values[1]), float(values[2])))
    return checked


def _is_numeric(value: object) -> bool:
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return False
    return bool(np.all(np.isfinite(array)))


def output_kind(path: str | Path) -> str:
    """``"segmentation"`` or ``"labelmap"``: what :func:`write_segmentation` writes at ``path``,
    from its suffix; a clear error for any other suffix (checked before the work, by the CLI)."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith(_SEGMENTATION_SUFFIX):
        return "segmentation"
    if name.endswith(_LABELMAP_SUFFIXES):
        return "labelmap"
    raise LiteMedSAMError(
        f"Cannot tell the output format of {path}: use {_SEGMENTATION_SUFFIX} (Slicer "
        f"segmentation) or a labelmap ({', '.join(_LABELMAP_SUFFIXES)})."
    )


def _ijk_to_lps(reference: sitk.Image) -> np.ndarray:
    """4x4 matrix from voxel index (i, j, k) to LPS mm; a 2D image becomes one 1 mm slice."""
    dimension = reference.GetDimension()
    direction = np.eye(3)
    direction[:dimension, :dimension] = np.array(reference.GetDirection()).reshape(
        dimension, dimension)
    spacing = np.ones(3)
    spacing[:dimension] = reference.GetSpacing()
    origin = np.zeros(3)
    origin[:dimension] = reference.GetOrigin()
    matrix = np.eye(4)
    matrix[:3, :3] = direction @ np.diag(spacing)
    matrix[:3, 3] = origin
    return matrix


def _write_seg_nrrd(path: Path, masks: list[np.ndarray], reference: sitk.Image,
                    names: list[str], colors: list[tuple[float, float, float]]) -> None:
    """Write a Slicer ``.seg.nrrd`` with slicerio: overlapping segments go to extra layers."""
    try:
        import slicerio
    except ImportError:  # pragma: no cover - slicerio is a dependency
        raise LiteMedSAMError(
            "Writing .seg.nrrd needs the 'slicerio' package (pip install slicerio), or write "
            "a labelmap (.nii.gz) instead."
        ) from None
    # slicerio arrays are indexed [i, j, k]; ours are [z, y, x] = [k, j, i].
    volumes = [mask if mask.ndim == 3 else mask[np.newaxis] for mask in masks]
    segmentation = slicerio.create_segmentation(volumes[0].shape[::-1], _ijk_to_lps(reference))
    for index, (volume, name, color) in enumerate(zip(volumes, names, colors)):
        slicerio.add_segment(segmentation, volume.transpose(2, 1, 0),
                             {"id": f"Segment_{index + 1}", "name": name, "color": list(color)})
    segmentation["containedRepresentationNames"] = ["Binary labelmap"]
    slicerio.write_segmentation(str(path), segmentation)


def _write_labelmap(path: Path, masks: list[np.ndarray], reference: sitk.Image) -> str | None:
    """Write label ``i + 1`` for mask ``i`` (later masks win); warn about overlapping voxels."""
    dtype = np.uint8 if len(masks) < 256 else np.uint16
    labels = np.zeros(masks[0].shape, dtype=dtype)
    coverage = np.zeros(masks[0].shape, dtype=np.uint16)
    for index, mask in enumerate(masks):
        labels[mask] = index + 1
        coverage += mask
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(reference)
    sitk.WriteImage(image, str(path), useCompression=True)
    overlapping = int((coverage > 1).sum())
    if overlapping:
        return (
            f"{overlapping} voxels are covered by more than one mask; a labelmap holds one "
            "label per voxel, so the later mask's label was written there. Save as .seg.nrrd "
            "to keep overlapping segments."
        )
    return None


def write_segmentation(path: str | Path, masks: Sequence[np.ndarray], reference: sitk.Image,
                       names: Sequence[str],
                       colors: Sequence[tuple[float, float, float]] | None = None) -> str | None:
    """Write masks as a Slicer segmentation or a labelmap on the reference image's grid.

    Args:
        path: output file. ``*.seg.nrrd``: a Slicer segmentation with one segment per mask
            (id ``Segment_<n>``, the given name and colour); overlapping masks are kept, in
            extra layers of a 4D NRRD (``kinds: list domain domain domain``) as Slicer stores
            them. ``*.nii.gz``, ``*.nii``, ``*.nrrd``, ``*.mha``, ``*.mhd``: a labelmap with
            value ``i + 1`` for mask ``i``. Parent folders are created. The file is written
            under a temporary name in the same folder and then renamed, so that a crash or a
            full disk never leaves a partial file at ``path`` (an existing file there stays
            as it was until the rename).
        masks: one bool or 0/1 integer array per segment, each with the reference's array
            shape (``[z, y, x]``, or ``[y, x]`` for a 2D reference).
        reference: the image the masks belong to; its origin, spacing and direction are
            written (a 2D reference is written as one slice in the segmentation file).
        names: one non-empty, unique name per mask.
        colors: one ``(r, g, b)`` in [0, 1] per mask; default :data:`DEFAULT_COLORS`.

    Returns:
        ``None``, or for a labelmap with overlapping masks, a warning saying how many voxels
        overlapped (the later mask's label is written there).

    Raises:
        LiteMedSAMError: unknown output suffix, masks of the wrong shape or type, bad names
            or colours, or a write failure (no space left on the device is said plainly).
    """
    path = Path(path)
    kind = output_kind(path)
    shape = _spatial_shape(reference)
    masks = _check_masks(masks, shape)
    names = _check_names(names, len(masks))
    colors = _check_colors(colors, len(masks))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise LiteMedSAMError(f"Cannot create the folder for {path}: {error}") from None
    # Written into a temporary folder beside ``path``, then renamed into place (companion
    # files first, as .mhd's .raw/.zraw; the named file last): never a partial file at ``path``.
    temporary = path.parent / f"{TEMPORARY_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        temporary.mkdir()
        written = temporary / path.name
        if kind == "segmentation":
            _write_seg_nrrd(written, masks, reference, names, colors)
            warning = None
        else:
            warning = _write_labelmap(written, masks, reference)
        for companion in temporary.iterdir():
            if companion != written:
                os.replace(companion, path.parent / companion.name)
        os.replace(written, path)
    except (OSError, RuntimeError, LiteMedSAMError) as error:
        raise LiteMedSAMError(_write_failure(path, error)) from None
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return warning


def _write_failure(path: Path, error: Exception) -> str:
    """The message for a failed write: say plainly when the disk is full."""
    text = str(error)
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left" in text:
        return (f"Could not write {path}: no space left on the device (or quota exceeded); nothing "
                "was written there. Free some space or write to another folder.")
    if isinstance(error, RuntimeError):
        text = _itk_reason(error)
    return f"Could not write {path}: {text}; nothing was written there."


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove the temporary folders that :func:`write_segmentation` left in ``folder`` when its
    process was killed mid-write (their process id is no longer running); returns them."""
    removed = []
    for candidate in Path(folder).glob(f"{TEMPORARY_PREFIX}*"):
        try:
            pid = int(candidate.name[len(TEMPORARY_PREFIX):].split("-", 1)[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _process_alive(pid):
            shutil.rmtree(candidate, ignore_errors=True)
            removed.append(candidate)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's), or cannot tell: keep its file
    return True


def _read_seg_nrrd(path: Path):
    """A Slicer ``.seg.nrrd``: its ``[z, y, x]`` grid shape, ``(label, name, mask)`` per segment
    (label ``i + 1`` for the ``i``-th segment in file order) and the spacing ``(z, y, x)``."""
    import slicerio

    seg = slicerio.read_segmentation(str(path))
    voxels = np.asarray(seg["voxels"])
    layered = voxels.ndim == 4
    shape_ijk = voxels.shape[:3] if layered else voxels.shape[-3:]
    segments = []
    for index, segment in enumerate(seg["segments"], start=1):
        layer = voxels[..., segment.get("layer", 0)] if layered else voxels
        mask = np.transpose(layer == segment["labelValue"], (2, 1, 0))
        segments.append((index, segment.get("name") or None, mask))
    spacing_ijk = np.linalg.norm(np.asarray(seg["ijkToLPS"])[:3, :3], axis=0)
    return tuple(shape_ijk[::-1]), segments, tuple(spacing_ijk[::-1])


def read_segments(path: str | Path):
    """Each labelled structure of a labelmap or a Slicer ``.seg.nrrd``, for scoring.

    Returns ``(segments, spacing)``: ``segments`` is a list of ``(label, name, mask)``, where
    ``mask`` is a bool array ``[z, y, x]``; a labelmap gives one per non-zero value (``name``
    None), a ``.seg.nrrd`` one per segment with label ``i + 1`` for the ``i``-th segment in
    file order (as :func:`write_segmentation` numbers a labelmap) and the segment's name.
    Overlapping segments stay whole. ``spacing`` is ``(z, y, x)`` in mm.
    """
    path = Path(path)
    if not path.exists():
        raise LiteMedSAMError(f"file not found: {path}")
    if path.name.lower().endswith(".seg.nrrd"):
        _, segments, spacing = _read_seg_nrrd(path)
        return segments, spacing
    labels, spacing = read_label_volume(path)
    return [(int(v), None, labels == v) for v in np.unique(labels) if v != 0], spacing


def read_label_volume(path: str | Path):
    """A label volume ``[z, y, x]`` (int) and its spacing ``(z, y, x)`` from a labelmap file or a
    Slicer ``.seg.nrrd`` (segment ``i`` in file order becomes label ``i + 1``)."""
    import SimpleITK as sitk

    path = Path(path)
    if not path.exists():
        raise LiteMedSAMError(f"file not found: {path}")
    if path.name.lower().endswith(".seg.nrrd"):
        shape, segments, spacing = _read_seg_nrrd(path)
        labels = np.zeros(shape, np.int32)
        for label, _, mask in segments:  # later segments win where they overlap
            labels[mask] = label
        return labels, spacing
    image = read_image(path)
    return sitk.GetArrayFromImage(image).astype(np.int32), tuple(image.GetSpacing()[::-1])


def unique_names(names: Sequence[str]) -> list[str]:
    """Segment names made unique in order: a repeated name gets " (2)", " (3)", ..."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out
