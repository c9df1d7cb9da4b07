"""An augmented image pool for distillation: slices of labelled volumes along all three axes
and 2-D images, each baked with one random augmentation and stored model-ready.

Distilling an encoder needs images only (the teacher's embedding is the target), but the
teacher's features are cached once per image (:mod:`Training.student_from_teacher`), so the
augmentation cannot be drawn anew each epoch: every pool entry is one augmented view, drawn
with a seeded generator. Entries are ``<pool>/<source>_<axis><index>_<k>.npz`` with ``img``
(uint8 ``[H, W]``, longest side 256: the size :func:`prepare_slice` resizes to, so the model
input is exactly what inference computes) and ``gt`` (uint16 on the same grid, 0 where the
source has no labels), plus ``source`` and ``axis``.

Augmentations (as the SwiftMedSAM / Rep-MedSAM recipes train): horizontal and vertical flips,
90-degree rotations, a random crop of 55-100% of each side, gamma 0.7-1.5, and for CT a random
window (level and width jittered around the soft-tissue, bone and lung windows) instead of the
fixed one; MR and other volumes use the inference normalisation (0.5-99.5 percentiles) with the
percentiles jittered.

Only volumes of the suite's *train* split are read (``index.json`` of
``tools/fetch_public_data.py``): the test split never trains.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import SimpleITK as sitk

from LiteMedSAMLib.preprocessing import resize_longest_side

CT_WINDOWS = ((40.0, 400.0), (400.0, 1800.0), (-600.0, 1500.0), (60.0, 250.0))  # (level, width)
MIN_SIDE = 40  # a slice thinner than this (e.g. sagittal cuts of a 20-slice CT) is skipped


def _ct_to_uint8(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    level, width = CT_WINDOWS[rng.integers(len(CT_WINDOWS))]
    level += rng.uniform(-0.15, 0.15) * width
    width *= rng.uniform(0.7, 1.4)
    lo, hi = level - width / 2, level + width / 2
    return (np.clip((image - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


def _other_to_uint8(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    nonzero = image[image > 0]
    if nonzero.size < 16:
        nonzero = image.ravel()
    lo, hi = np.percentile(nonzero, [rng.uniform(0.0, 2.0), rng.uniform(97.0, 100.0)])
    if hi <= lo:
        return np.zeros(image.shape, np.uint8)
    out = (np.clip((image - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    out[image == 0] = 0
    return out


def augment(img: np.ndarray, gt: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One random view: crop, flips, 90-degree rotation, gamma; ``gt`` follows the geometry."""
    h, w = gt.shape
    ch, cw = int(h * rng.uniform(0.55, 1.0)), int(w * rng.uniform(0.55, 1.0))
    y0, x0 = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    img, gt = img[y0:y0 + ch, x0:x0 + cw], gt[y0:y0 + ch, x0:x0 + cw]
    if rng.random() < 0.5:
        img, gt = img[:, ::-1], gt[:, ::-1]
    if rng.random() < 0.5:
        img, gt = img[::-1], gt[::-1]
    k = int(rng.integers(4))
    img, gt = np.rot90(img, k), np.rot90(gt, k)
    gamma = rng.uniform(0.7, 1.5)
    img = (255.0 * (img / 255.0) ** gamma).astype(np.uint8)
    return np.ascontiguousarray(img), np.ascontiguousarray(gt)


def model_ready(img: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Resize to the longest side 256 as inference does (``gt`` nearest)."""
    small = resize_longest_side(img)
    gt_small = cv2.resize(gt.astype(np.uint16), (small.shape[1], small.shape[0]),
                          interpolation=cv2.INTER_NEAREST)
    return small, gt_small


def _volume_slices(image: np.ndarray, label: np.ndarray, per_axis: int,
                   rng: np.random.Generator) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    for axis in range(image.ndim):
        n = image.shape[axis]
        other = [s for i, s in enumerate(image.shape) if i != axis]
        if min(other) < MIN_SIDE:
            continue
        labelled = [i for i in range(n) if np.any(np.take(label, i, axis=axis))]
        candidates = labelled or list(range(n))
        picks = np.unique(np.linspace(0, len(candidates) - 1, min(per_axis, len(candidates))).round().astype(int))
        for i in picks:
            z = candidates[i]
            yield f"{'zyx'[axis]}{z:03d}", np.take(image, z, axis=axis), np.take(label, z, axis=axis)


def build_pool(index: Path, out: Path, per_axis: int = 40, views: int = 1,
               images: list[Path] | None = None, image_views: int = 6, seed: int = 2024,
               split: str = "train") -> list[Path]:
    """Write the pool; returns its files. ``per_axis`` slices per axis of each volume of
    ``split`` (``"test"`` only to build images for measuring, never for training), ``views``
    augmented views of each; each 2-D image in ``images`` ``image_views`` times."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    entries = json.loads(index.read_text())["cases"]
    written = []
    for case in entries.values():
        if case["split"] != split or case["dimension"] != 3:
            continue
        folder = index.parent
        image = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / case["image"]))).astype(np.float32)
        label = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / case["label"]))).astype(np.uint16)
        is_ct = case["modality"] == "CT"
        for name, img, gt in _volume_slices(image, label, per_axis, rng):
            for k in range(views):
                u8 = _ct_to_uint8(img, rng) if is_ct else _other_to_uint8(img, rng)
                a, g = model_ready(*augment(u8, gt, rng))
                path = out / f"{case['id']}_{name}_{k}.npz"
                np.savez_compressed(path, img=a, gt=g, source=case["id"], axis=name[0])
                written.append(path)
    for path in images or []:
        raw = _read_2d(path)
        if raw is None:
            continue
        for k in range(image_views):
            u8 = raw if raw.dtype == np.uint8 else _other_to_uint8(raw.astype(np.float32), rng)
            a, g = model_ready(*augment(u8, np.zeros(u8.shape[:2], np.uint16), rng))
            dest = out / f"img_{path.stem}_{k}.npz"
            np.savez_compressed(dest, img=a, gt=g, source=path.name, axis="2d")
            written.append(dest)
    return written


def _read_2d(path: Path) -> np.ndarray | None:
    """A 2-D image (DICOM, PNG, JPEG) as grayscale or RGB; ``None`` if unreadable or not 2-D."""
    try:
        if path.suffix.lower() in (".png", ".jpg", ".jpeg"):
            img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if img is None:
                return None
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if img.ndim == 3 else img
        else:
            img = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
            if img.ndim == 4 or (img.ndim == 3 and img.shape[-1] not in (3, 4)):
                img = img[len(img) // 2]  # a multi-frame file: its middle frame
            img = img[..., :3] if img.ndim == 3 else img
    except RuntimeError:
        return None
    if img.ndim not in (2, 3) or min(img.shape[:2]) < MIN_SIDE:
        return None
    if img.dtype != np.uint8 and img.ndim == 3:
        img = cv2.normalize(img.astype(np.float32), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return img


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m Training.image_pool", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--index", required=True, type=Path, help="the suite's index.json")
    p.add_argument("-o", "--output", required=True, type=Path)
    p.add_argument("--per-axis", type=int, default=40)
    p.add_argument("--views", type=int, default=1)
    p.add_argument("--images", nargs="*", type=Path, default=[], help="2-D images (DICOM, PNG, JPEG)")
    p.add_argument("--image-views", type=int, default=6)
    p.add_argument("--seed", type=int, default=2024)
    p.add_argument("--split", default="train", choices=["train", "test"],
                   help="volumes of this split (test: images to measure on, never to train)")
    args = p.parse_args(argv)
    files = build_pool(args.index, args.output, args.per_axis, args.views, args.images,
                       args.image_views, args.seed, args.split)
    print(f"{len(files)} pool images in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
