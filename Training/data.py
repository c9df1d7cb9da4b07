"""Training data: image/label volumes or challenge npz files -> 2D slices -> training samples.

Preparation (:func:`prepare_pair`, :func:`prepare_npz`) follows MedSAM's ``pre_CT_MR.py``: the
image is normalised to uint8 with the same presets as inference (CT window, MR percentiles;
:mod:`LiteMedSAMLib.preprocessing`), objects smaller than ``min_pixels`` on a slice are dropped,
and every slice with a label left is written as ``<case>_z<index>.npz`` holding ``img``
(uint8 ``[H, W]`` or ``[H, W, 3]``) and ``gt`` (uint16 ``[H, W]``, 0 = background).
The challenge's npz format (``imgs``, ``gts``, ``spacings``; images already uint8) is read as is.

Samples (:class:`SliceDataset`) follow the official ``train_one_gpu.py`` of LiteMedSAM: one
random object per slice, the image resized (longest side 256, ``INTER_AREA``), min-max
normalised and zero-padded exactly as at inference, random horizontal and vertical flips, and a
box from the object's mask enlarged by a random 0..``bbox_shift`` pixels on each side (box
jitter, as the papers train).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from LiteMedSAMLib.preprocessing import intensity_mapping, pad_to_square, prepare_slice, resized_shape

from .common import DataError


# ------------------------------------------------------------------------------ checks
def check_label(label: np.ndarray, source: str) -> np.ndarray:
    """Labels must be integers (or integral floats/bools); returns them as uint16."""
    label = np.asarray(label)
    if label.dtype == bool:
        return label.astype(np.uint16)
    if label.dtype.kind == "f":
        if not np.all(np.isfinite(label)) or not np.array_equal(label, np.round(label)):
            raise DataError(f"{source}: the label has dtype {label.dtype} with non-integer values; "
                            "a label map needs integer values (0 = background, 1..n = objects)")
    elif label.dtype.kind not in "iu":
        raise DataError(f"{source}: the label has dtype {label.dtype}; expected integers")
    if label.size and (label.min() < 0 or label.max() > 65535):
        raise DataError(f"{source}: label values must be in 0..65535, got {label.min()}..{label.max()}")
    return label.astype(np.uint16)


def check_pair(image: np.ndarray, label: np.ndarray, source: str) -> None:
    if image.dtype == bool or image.dtype.kind not in "uif":
        raise DataError(f"{source}: the image has dtype {image.dtype}; expected numbers")
    spatial = image.shape[:label.ndim]
    if spatial != label.shape:
        raise DataError(f"{source}: image shape {image.shape} and label shape {label.shape} do not "
                        "match; the label must be on the image's voxel grid")
    if not np.any(label):
        raise DataError(f"{source}: the label is empty (all background); nothing to learn from")


def _remove_small(label_slice: np.ndarray, min_pixels: int) -> np.ndarray:
    if min_pixels <= 0:
        return label_slice
    out = label_slice.copy()
    for value, count in zip(*np.unique(label_slice, return_counts=True)):
        if value and count < min_pixels:
            out[out == value] = 0
    return out


def _write_slices(volume_u8: np.ndarray, label: np.ndarray, case: str, out: Path,
                  min_pixels: int, max_slices: int | None) -> list[Path]:
    z_with_labels = [z for z in range(label.shape[0]) if np.any(_remove_small(label[z], min_pixels))]
    if not z_with_labels:
        raise DataError(f"{case}: no slice has an object of at least {min_pixels} pixels")
    if max_slices and len(z_with_labels) > max_slices:
        picks = np.linspace(0, len(z_with_labels) - 1, max_slices).round().astype(int)
        z_with_labels = [z_with_labels[i] for i in picks]
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for z in z_with_labels:
        path = out / f"{case}_z{z:03d}.npz"
        np.savez_compressed(path, img=volume_u8[z], gt=_remove_small(label[z], min_pixels))
        paths.append(path)
    return paths


def prepare_pair(image_path: str | Path, label_path: str | Path, out: Path, preset: str = "auto",
                 min_pixels: int = 100, max_slices: int | None = None) -> list[Path]:
    """One image/label pair (NRRD, NIfTI, DICOM folder, anything SimpleITK reads) -> slices."""
    import SimpleITK as sitk

    from LiteMedSAMLib.imageio import read_image

    image_itk, label_itk = read_image(image_path), read_image(label_path)
    image = sitk.GetArrayFromImage(image_itk)
    label = sitk.GetArrayFromImage(label_itk)
    source = f"{Path(image_path).name} / {Path(label_path).name}"
    label = check_label(label, source)
    check_pair(image, label, source)
    if image.ndim == 2:
        image, label = image[None], label[None]
    mapping = intensity_mapping(image, preset)
    case = Path(image_path).name.split(".")[0]
    return _write_slices(mapping.apply(image), label, case, out, min_pixels, max_slices)


def prepare_npz(npz_path: str | Path, out: Path, min_pixels: int = 100,
                max_slices: int | None = None) -> list[Path]:
    """A CVPR 2024 challenge npz (``imgs`` uint8 ``[D, H, W]`` or ``[H, W, 3]``, ``gts``) -> slices."""
    with np.load(npz_path, allow_pickle=False) as data:
        missing = [k for k in ("imgs", "gts") if k not in data]
        if missing:
            raise DataError(f"{npz_path}: missing arrays {missing}; the challenge format has imgs, gts, spacings")
        image, label = data["imgs"], data["gts"]
    source = Path(npz_path).name
    label = check_label(label, source)
    check_pair(image, label, source)
    if image.dtype != np.uint8:
        raise DataError(f"{source}: challenge npz images must already be uint8 (0-255), got {image.dtype}")
    if label.ndim == 2:  # a 2D image, grayscale or RGB
        image, label = image[None], label[None]
    return _write_slices(image, label, Path(npz_path).stem, out, min_pixels, max_slices)


# ------------------------------------------------------------------------------ samples
def list_slices(folder: str | Path) -> list[Path]:
    paths = sorted(Path(folder).glob("*.npz"))
    if not paths:
        raise DataError(f"no prepared slices (*.npz) in {folder}; run python -m Training.prepare first")
    return paths


def load_slice(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            img, gt = data["img"], data["gt"]
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"{path} is not a prepared slice (img, gt): {exc}") from exc
    if img.dtype != np.uint8 or img.shape[:2] != gt.shape:
        raise DataError(f"{path}: img must be uint8 with the shape of gt; got {img.dtype} {img.shape} "
                        f"and gt {gt.shape}")
    return img, gt


def model_input(img: np.ndarray) -> torch.Tensor:
    """The inference preprocessing: ``(3, 256, 256)`` float in [0, 1]."""
    return prepare_slice(img)[0]


def mask_to_model(mask: np.ndarray) -> np.ndarray:
    """Resize a mask like the image (longest side 256, nearest) and pad: ``(256, 256)``."""
    h, w = resized_shape(*mask.shape)
    return pad_to_square(cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST))


def jittered_box(mask: np.ndarray, rng: np.random.Generator, bbox_shift: int) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    shift = rng.integers(0, bbox_shift + 1, size=4) if bbox_shift > 0 else np.zeros(4, int)
    return np.array([max(0, xs.min() - shift[0]), max(0, ys.min() - shift[1]),
                     min(w - 1, xs.max() + shift[2]), min(h - 1, ys.max() + shift[3])], dtype=np.float32)


def random_scribble(mask: np.ndarray, rng: np.random.Generator, strokes: int = 2) -> np.ndarray:
    """A few thin random polylines inside ``mask`` (a user's scribble; Swin-LiteMedSAM trains
    with scribble prompts)."""
    ys, xs = np.nonzero(mask)
    out = np.zeros(mask.shape, np.uint8)
    for _ in range(strokes):
        idx = rng.choice(len(xs), size=3)
        pts = np.stack([xs[idx], ys[idx]], axis=1).astype(np.int32)
        cv2.polylines(out, [pts], False, 1, thickness=2)
    return out * (mask > 0)


class SliceDataset(Dataset):
    """Prepared slices -> ``image (3,256,256)``, ``mask (1,256,256)``, ``box (4,)`` [, ``scribble``]."""

    def __init__(self, folder: str | Path, bbox_shift: int = 5, augment: bool = True,
                 scribble_prob: float = 0.0, seed: int = 0) -> None:
        self.paths = list_slices(folder)
        self.bbox_shift, self.augment, self.scribble_prob = bbox_shift, augment, scribble_prob
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, i])
        img, gt = load_slice(self.paths[i])
        labels = np.unique(gt)
        labels = labels[labels > 0]
        if labels.size == 0:
            raise DataError(f"{self.paths[i]}: the slice has no object")
        mask = (gt == rng.choice(labels)).astype(np.uint8)
        image = model_input(img)
        mask = mask_to_model(mask)
        if self.augment:
            if rng.random() < 0.5:
                image, mask = image.flip(-1), mask[:, ::-1]
            if rng.random() < 0.5:
                image, mask = image.flip(-2), mask[::-1, :]
        mask = np.ascontiguousarray(mask)
        sample = {"image": image.contiguous(), "mask": torch.from_numpy(mask[None].astype(np.float32)),
                  "box": torch.from_numpy(jittered_box(mask, rng, self.bbox_shift))}
        if self.scribble_prob > 0:  # the training step decides per batch whether to use it
            sample["scribble"] = torch.from_numpy(random_scribble(mask, rng)[None].astype(np.float32))
        return sample
