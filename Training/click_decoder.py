"""Train LiteMedSAM's prompt encoder and mask decoder for clicks and scribbles (issue #13).

The image encoder stays frozen: every training frame is encoded once (``cache``) with the
exact-mode OpenVINO encoder of the official LiteMedSAM, and only the prompt encoder and mask
decoder (about 4 M parameters, started from the official ones) are trained (``train``) on
box + clicks + scribbles, SAM's interactive way: round 0 is the box through the *official*
decoder (which the library keeps for the box pass), each later round adds a simulated
correction at the centre of the largest error region of the current prediction (the CVPR 2025
protocol, :func:`LiteMedSAMLib.evaluation.clicks.next_click` on the 256 x 256 frame; sometimes a
short scribble inside that region, encoded as points as the library does) and feeds the
previous low-resolution logits back as the mask prompt. As in RITM's iterative training
(Sofiiuk et al. 2022), the first rounds of a sample run without gradients (detached) and the
loss (BCE + Dice against the reference at 256) is taken on the last one or two; the number of
rounds is random, so every round depth is trained. With ``--click-weight W`` the loss adds W
times a BCE averaged over the error regions the clicks pointed at alone
(:func:`click_region_loss`): a click on a nearly right slice points at a few dozen pixels of
65,536, and the whole-frame loss barely tells the decoder whether it followed the click.

Frames are a mix of whole slices with the official intensity preset and crops around one
object (side 2-4x the object, resized to 256, intensity window from the object's box or the
official preset), along all three axes, so that the decoder serves both today's full-slice
frames and crop-and-zoom frames.

    python -m Training.click_decoder cache --index /work/cache/litemedsam-data/index.json -o CACHE
    nohup nice -n 5 python -m Training.click_decoder train --cache CACHE -o runs/click --minutes 55 &
    python -m Training.click_decoder export --run runs/click -o LiteMedSAMLib/weights/...pth
    # propagation runs (+ correction samples on their slices), fine-tuning the shipped decoder:
    python -m Training.click_decoder cache --index ... -o SEQ --frames 0 --sequences 160
    python -m Training.click_decoder train --cache SEQ -o runs/prop \
        --init LiteMedSAMLib/weights/litemedsam_click_decoder.pth
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from LiteMedSAMLib.errors import LiteMedSAMError
from LiteMedSAMLib.evaluation.clicks import error_region, long_axis, next_click, stroke_along
from LiteMedSAMLib.preprocessing import (
    MODEL_INPUT_SIZE,
    box_from_mask_model,
    intensity_mapping,
    pad_to_square,
    prepare_slice,
    resized_shape,
)

SCRIBBLE_POINTS = 8  # as LiteMedSAMLib.refinement.SCRIBBLE_POINTS
MIN_PIXELS = 16      # objects smaller than this on a 256 frame are not trained on
# How many corrections a training sample gets before the graded one. In 3D the clicks of the
# protocol mostly land on different slices, so one slice rarely gets more than two: shallow
# depths are drawn more often (compute goes where the use is).
ROUND_WEIGHTS = np.array([0.4, 0.3, 0.15, 0.1, 0.05])


# ----------------------------------------------------------------------------- frames
def label_to_frame(label: np.ndarray) -> np.ndarray:
    """A label slice on the model's 256 frame (longest side 256, nearest, zero padding)."""
    h, w = resized_shape(*label.shape)
    small = cv2.resize(label.astype(np.int32), (w, h), interpolation=cv2.INTER_NEAREST)
    return pad_to_square(small).astype(np.int32)


def window_uint8(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    """``image`` to uint8 with the 0.5-99.5 percentiles of ``region``'s values as the window."""
    lo, hi = np.percentile(region, [0.5, 99.5])
    if hi <= lo:
        hi = lo + 1.0
    return ((np.clip(image, lo, hi) - lo) / (hi - lo) * 255.0).astype(np.uint8)


def read_case(image_path: str, label_path: str) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """``(image, label, spacing)``: the arrays (z, y, x) and the voxel spacing (mm) along those axes."""
    import SimpleITK as sitk

    itk_image = sitk.ReadImage(str(image_path))
    image = sitk.GetArrayFromImage(itk_image)
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(label_path)))
    if image.shape != label.shape:
        raise LiteMedSAMError(f"{label_path} {label.shape} is not on the grid of {image_path} {image.shape}")
    return image, label.astype(np.int32), tuple(float(v) for v in reversed(itk_image.GetSpacing()))


def frames_of_case(image: np.ndarray, label: np.ndarray, count: int, rng: np.random.Generator,
                   crop_fraction: float = 0.6, preset: str = "auto"):
    """Yield ``count`` frames ``(uint8 slice image, label frame 256, kind)`` from one volume:
    slices along all three axes (half of them axial), whole or cropped around one object."""
    mapping = intensity_mapping(image, preset)
    axes = rng.choice([0, 0, 0, 1, 2], size=count)
    for axis in axes:
        img_v, lab_v = np.moveaxis(image, axis, 0), np.moveaxis(label, axis, 0)
        present = np.flatnonzero(lab_v.reshape(lab_v.shape[0], -1).max(1) > 0)
        if not len(present):
            continue
        k = int(rng.choice(present))
        raw, lab = img_v[k], lab_v[k]
        if rng.random() >= crop_fraction:
            yield mapping.apply(raw), label_to_frame(lab), f"full{axis}"
            continue
        ids = [i for i in np.unique(lab) if i]
        target = lab == int(rng.choice(ids))
        ys, xs = np.nonzero(target)
        cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
        side = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) * rng.uniform(2.0, 4.0)
        side = int(min(max(side, 48), max(lab.shape)))
        y0 = int(np.clip(round(cy - side / 2), 0, max(0, lab.shape[0] - side)))
        x0 = int(np.clip(round(cx - side / 2), 0, max(0, lab.shape[1] - side)))
        window = (slice(y0, y0 + side), slice(x0, x0 + side))
        if rng.random() < 0.5:
            box = raw[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
            u8 = window_uint8(raw[window], box)
        else:
            u8 = mapping.apply(raw[window])
        yield u8, label_to_frame(lab[window]), f"crop{axis}"


def sequences_of_case(image: np.ndarray, label: np.ndarray, spacing_zyx: tuple[float, float, float],
                      count: int, rng: np.random.Generator, length: int = 4, crop_fraction: float = 0.2,
                      max_gap_mm: float = 3.5, min_pixels: int = 64, preset: str = "auto"):
    """Yield ``count`` propagation runs ``(uint8 slices [K], label frames [K, 256, 256], object,
    kind)`` from one volume: ``length`` slices of one object along one axis (half of them
    axial; axes with slices further apart than ``max_gap_mm`` skipped), every ``s``-th slice
    with ``s * spacing <= max_gap_mm`` drawn at random, starting
    on a slice where the object covers at least ``min_pixels`` model pixels and going either
    way (possibly past its end). One frame for the whole run, as the library keeps one per
    object: mostly the whole slice with the volume's preset or a window from the object's
    voxels in and around its box over the run (half each), else a crop around the object."""
    mapping = intensity_mapping(image, preset)
    made, tries = 0, 0
    while made < count and tries < 50 * max(count, 1):
        tries += 1
        axis = int(rng.choice([0, 0, 0, 1, 2]))
        img_v, lab_v = np.moveaxis(image, axis, 0), np.moveaxis(label, axis, 0)
        n = lab_v.shape[0]
        if float(spacing_zyx[axis]) > max_gap_mm:  # slices along this axis lie further apart than asked
            continue
        gap_max = max(1, int(max_gap_mm // max(float(spacing_zyx[axis]), 1e-6)))
        stride = int(rng.integers(1, gap_max + 1)) * int(rng.choice([-1, 1]))
        present = np.flatnonzero(lab_v.reshape(n, -1).max(1) > 0)
        if not len(present):
            continue
        k0 = int(rng.choice(present))
        ks = [k0 + i * stride for i in range(length)]
        if min(ks) < 0 or max(ks) >= n:
            continue
        frame0 = label_to_frame(lab_v[k0])
        ids, areas = np.unique(frame0, return_counts=True)
        ok = [int(i) for i, a in zip(ids, areas) if i and min_pixels <= a <= 0.6 * frame0.size]
        if not ok:
            continue
        obj = int(rng.choice(ok))
        raws, labs = img_v[ks], lab_v[ks]
        _, ys, xs = np.nonzero(labs == obj)
        by0, by1, bx0, bx1 = ys.min(), ys.max(), xs.min(), xs.max()
        if rng.random() < crop_fraction:
            cy, cx = (by0 + by1) / 2, (bx0 + bx1) / 2
            side = max(by1 - by0 + 1, bx1 - bx0 + 1) * rng.uniform(2.0, 4.0)
            side = int(min(max(side, 48), max(labs.shape[1:])))
            y0 = int(np.clip(round(cy - side / 2), 0, max(0, labs.shape[1] - side)))
            x0 = int(np.clip(round(cx - side / 2), 0, max(0, labs.shape[2] - side)))
            window, kind = (slice(None), slice(y0, y0 + side), slice(x0, x0 + side)), f"seqcrop{axis}"
        else:
            window, kind = (slice(None), slice(None), slice(None)), f"seqfull{axis}"
        if rng.random() < 0.5:  # the box window, as the library takes it (box + a quarter ring)
            my, mx = (by1 - by0 + 1) // 4, (bx1 - bx0 + 1) // 4
            region = raws[:, max(by0 - my, 0):by1 + my + 1, max(bx0 - mx, 0):bx1 + mx + 1]
            u8 = [window_uint8(r[window[1:]], region) for r in raws]
            kind += "w"
        else:
            u8 = [mapping.apply(r[window[1:]]) for r in raws]
        yield u8, np.stack([label_to_frame(lab[window[1:]]) for lab in labs]), obj, f"{kind}s{abs(stride)}"
        made += 1


def cases_from_index(index: Path) -> list[dict]:
    data = json.loads(Path(index).read_text())
    cases = data["cases"] if isinstance(data, dict) else data
    if isinstance(cases, dict):
        cases = [dict(c, id=c.get("id", k)) for k, c in cases.items()]
    return [c for c in cases if c.get("split") == "train"]


def cmd_cache(args: argparse.Namespace) -> int:
    from LiteMedSAMLib.backends import make_predictor

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    if args.index:
        cases = cases_from_index(Path(args.index))
        base = Path(args.index).parent
        pairs = [(str(base / c["image"]) if not os.path.isabs(c["image"]) else c["image"],
                  str(base / c["label"]) if not os.path.isabs(c["label"]) else c["label"],
                  c.get("name") or c.get("id") or Path(c["image"]).parent.name) for c in cases]
    else:
        pairs = [(a, b, Path(a).name.split(".")[0]) for a, b in zip(args.pair[::2], args.pair[1::2])]
    if not pairs:
        raise LiteMedSAMError("no training cases")
    predictor = make_predictor("litemedsam", "exact", threads=args.threads)
    encoder = predictor.encoder
    counts = dict(item.split("=") for item in args.case_frames)
    rng = np.random.default_rng(args.seed)

    def write_frame(item, path: Path, name: str) -> int:
        """One slice, every object on it kept as a training label; returns the slices encoded."""
        u8, lab, kind = item
        ids, areas = np.unique(lab, return_counts=True)
        keep = [int(j) for j, a in zip(ids, areas) if j and MIN_PIXELS <= a <= 0.6 * lab.size]
        if not keep:
            return 0
        with torch.no_grad():
            emb = encoder(prepare_slice(u8))
        _atomic_save({"embedding": emb[0].to(torch.float16), "label": torch.from_numpy(lab.astype(np.int16)),
                      "ids": keep, "kind": kind, "case": name}, path)
        return 1

    def write_run(item, path: Path, name: str) -> int:
        """A propagation run: every slice encoded, one object; returns the slices encoded."""
        u8s, labs, obj, kind = item
        with torch.no_grad():
            embs = torch.cat([encoder(prepare_slice(u8)) for u8 in u8s])
        _atomic_save({"embeddings": embs.to(torch.float16), "labels": torch.from_numpy(labs.astype(np.int16)),
                      "ids": [obj], "kind": kind, "case": name}, path)
        return len(u8s)

    generators = []  # (file name prefix, numbered items, the writer for that kind of item)
    for image_path, label_path, name in pairs:
        image, label, spacing = read_case(image_path, label_path)
        count = int(counts.get(name, args.frames // len(pairs)))
        if count:
            generators.append((name, enumerate(frames_of_case(image, label, count, rng)), write_frame))
        if args.sequences and image.ndim == 3:
            runs = sequences_of_case(image, label, spacing, args.sequences // len(pairs),
                                     rng, length=args.sequence_length, max_gap_mm=args.max_gap_mm)
            generators.append((f"seq_{name}", enumerate(runs), write_run))
    start = time.perf_counter()
    done = 0
    while generators:  # round robin over the cases, so that a partial cache already mixes them
        for entry in list(generators):
            prefix, items, write = entry
            try:
                i, item = next(items)
            except StopIteration:
                generators.remove(entry)
                continue
            path = out / f"{prefix}_{i:04d}.pt"
            if path.exists():
                continue
            encoded = write(item, path, prefix)
            done += encoded
            if encoded and done % 25 < encoded:
                print(f"{done} frames, {time.perf_counter() - start:.0f} s", flush=True)
    print(f"cached {done} frames in {time.perf_counter() - start:.0f} s", flush=True)
    return 0


# ----------------------------------------------------------------------------- simulation
def largest_error_click(pred: np.ndarray, gt: np.ndarray, rng: np.random.Generator | None = None,
                        jitter: float = 0.0) -> tuple[int, int, bool] | None:
    """``(x, y, positive)`` at the centre of the largest error region (CVPR 2025 protocol, 2-D);
    with probability ``jitter`` a random pixel of that region's inner half instead (users do
    not click exact centres). ``None`` when ``pred`` equals ``gt``."""
    click = next_click(pred[None], gt[None])
    if click is None:
        return None
    x, y = click.x, click.y
    if rng is not None and rng.random() < jitter:
        region = error_region(pred, gt, np.array([[x, y]]))
        dist = ndimage.distance_transform_edt(region)
        ys, xs = np.nonzero(dist >= 0.5 * dist.max())
        j = int(rng.integers(len(xs)))
        x, y = int(xs[j]), int(ys[j])
    return x, y, bool(gt[y, x])


def scribble_in_region(region: np.ndarray, x: int, y: int, rng: np.random.Generator) -> np.ndarray:
    """A short straight stroke through (x, y) along the region's long axis turned by a random
    angle, inside the region: ``(N, 2)`` (x, y) pixels in drawing order (:func:`stroke_along`)."""
    ys, xs = np.nonzero(region)
    if len(xs) < 3:
        return np.array([[x, y]])
    direction = long_axis(region)
    angle = rng.normal(0, 0.3)
    c, s = math.cos(angle), math.sin(angle)
    direction = np.array([c * direction[0] - s * direction[1], s * direction[0] + c * direction[1]])
    length = rng.uniform(0.3, 0.8)
    return stroke_along(region, x, y, direction, max(2, int(length * math.sqrt(len(xs)) * 1.5)))


def sample_along(pixels: np.ndarray, count: int = SCRIBBLE_POINTS) -> np.ndarray:
    if len(pixels) <= count:
        return pixels.astype(np.float64)
    return pixels[np.rint(np.linspace(0, len(pixels) - 1, count)).astype(int)].astype(np.float64)


def jittered_box(gt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A box prompt for ``gt`` as the library gives them: tight + 0-5 px (propagated slices: the
    neighbour's mask + 3), looser (a 3D box's projection on an off-centre slice), rarely tighter."""
    ys, xs = np.nonzero(gt)
    box = np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float64)
    w, h = box[2] - box[0] + 1, box[3] - box[1] + 1
    u = rng.random()
    if u < 0.5:
        delta = rng.integers(0, 6, size=4)
    elif u < 0.85:
        delta = rng.uniform(0, 0.4, size=4) * np.array([w, h, w, h]) + rng.integers(0, 4, size=4)
    else:
        delta = rng.uniform(-0.1, 0.1, size=4) * np.array([w, h, w, h])
    box += np.array([-1, -1, 1, 1]) * delta
    return np.clip(np.round(box), 0, MODEL_INPUT_SIZE)


def box_with(box: np.ndarray, coords: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The box enlarged by 3 to hold every positive point (as the library's ``_box_with``)."""
    pos = coords[labels == 1]
    if not len(pos):
        return box
    lo = np.maximum(0, np.floor(pos.min(0)) - 3)
    hi = np.minimum(MODEL_INPUT_SIZE, np.ceil(pos.max(0)) + 3)
    return np.array([min(box[0], lo[0]), min(box[1], lo[1]), max(box[2], hi[0]), max(box[3], hi[1])])


# ----------------------------------------------------------------------------- model
def decode(pe, md, emb, box, coords, labels, mask_input):
    """Single-output logits ``(1, 1, 256, 256)`` and IoU of prompt encoder ``pe`` + decoder ``md``."""
    boxes = torch.as_tensor(box, dtype=torch.float)[None, None]
    points = None
    if coords is not None and len(coords):
        points = (torch.as_tensor(coords, dtype=torch.float)[None], torch.as_tensor(labels, dtype=torch.int)[None])
    sparse, dense = pe(points=points, boxes=boxes, masks=mask_input)
    return md(image_embeddings=emb, image_pe=pe.get_dense_pe(), sparse_prompt_embeddings=sparse,
              dense_prompt_embeddings=dense, multimask_output=False)


def seg_loss(logits: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    bce = F.binary_cross_entropy_with_logits(logits, gt)
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * gt).sum() + 1) / (p.sum() + gt.sum() + 1)
    return bce + dice


def click_region_loss(logits: torch.Tensor, gt: torch.Tensor, clicked: torch.Tensor) -> torch.Tensor:
    """BCE over the pixels the clicks pointed at (their error regions), averaged over those
    pixels alone: on a slice that is nearly right a click's region is a few dozen of 65,536
    pixels, so the whole-frame loss barely notices whether the click was followed."""
    if not bool(clicked.any()):
        return logits.new_zeros(())
    return F.binary_cross_entropy_with_logits(logits[clicked], gt[clicked])


def dsc(a: np.ndarray, b: np.ndarray) -> float:
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else float(2 * np.logical_and(a, b).sum() / s)


class Frames:
    """The cached frames of a folder, loaded once and kept in memory; re-scanned on demand so
    that training can start while the cache is still being written."""

    def __init__(self, folder: Path, val_fraction: float = 0.05) -> None:
        self.folder, self.val_fraction = Path(folder), val_fraction
        self.items: dict[str, dict] = {}
        self.train: list[str] = []
        self.val: list[str] = []
        # the propagation runs among them (each of their slices is also a frame for corrections)
        self.seq_train: list[str] = []
        self.seq_val: list[str] = []
        self.rescan()

    def rescan(self) -> None:
        for path in sorted(self.folder.glob("*.pt")):
            if path.name in self.items:
                continue
            try:
                item = torch.load(path, weights_only=True)
            except Exception:
                continue  # being written
            self.items[path.name] = item
            # held-out frames: a fixed hash of the name, so resuming keeps the split
            held_out = (hash_name(path.name) % 1000) < self.val_fraction * 1000
            (self.val if held_out else self.train).append(path.name)
            if "embeddings" in item:
                (self.seq_val if held_out else self.seq_train).append(path.name)

    def sample(self, names: list[str], rng: np.random.Generator):
        """``(embedding (1, 256, 64, 64), reference mask)`` of one object on a random frame of
        ``names`` (of a propagation run: one of its slices where the object is)."""
        name = names[int(rng.integers(len(names)))]
        item = self.items[name]
        obj = int(rng.choice(item["ids"]))
        if "embeddings" in item:
            labels = item["labels"].numpy() == obj
            present = np.flatnonzero(labels.reshape(len(labels), -1).sum(1) >= MIN_PIXELS)
            k = int(rng.choice(present)) if len(present) else 0
            return item["embeddings"][k:k + 1].float(), labels[k]
        gt = item["label"].numpy() == obj
        emb = item["embedding"][None].float()
        return emb, gt

    def run(self, name: str):
        """A propagation run: ``(embeddings (K, 256, 64, 64), reference masks (K, 256, 256))``."""
        item = self.items[name]
        return item["embeddings"].float(), item["labels"].numpy() == int(item["ids"][0])


def hash_name(name: str) -> int:
    import hashlib

    return int(hashlib.sha1(name.encode()).hexdigest()[:8], 16)


def big_error(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``mask`` with a large part missed or leaked, as a propagated slice has it where the sweep
    lost a lobe or ran into a neighbour: half the time the part of the mask beyond a random line
    (25-60% of it) is cut off, else the mask grows by 6-20 pixels on one side of a line through
    its centre."""
    if np.count_nonzero(mask) < 20:
        return mask
    theta = rng.uniform(0, 2 * np.pi)
    direction = np.array([np.cos(theta), np.sin(theta)])
    yy, xx = np.mgrid[:mask.shape[0], :mask.shape[1]]
    along = xx * direction[0] + yy * direction[1]
    if rng.random() < 0.5:
        cut = np.quantile(along[mask], rng.uniform(0.4, 0.75))
        changed = mask & (along <= cut)
    else:
        centre = along[mask].mean()
        changed = mask | (grown(mask, int(rng.integers(6, 21))) & (along > centre))
    return changed if changed.any() else mask


def near_mask(gt: np.ndarray, rng: np.random.Generator, big_p: float = 0.0) -> np.ndarray:
    """A mask that is nearly the reference, as a propagated or carried slice is when the user
    clicks on it: ``gt`` eroded or dilated by up to 3 pixels, then (60%) one or two disks of
    3-12 pixels centred on its border added or cut out (a missed lobe, a leak). Its errors are
    thin rims and local bumps, the kind the click protocol finds on a 3D sweep's slices; with
    probability ``big_p`` a large part is then missed or leaked as well (:func:`big_error`)."""
    mask = grown(gt.astype(bool), int(rng.integers(-3, 4)))
    if big_p and rng.random() < big_p:
        mask = big_error(mask, rng)
    if rng.random() < 0.6:
        border = mask & ~ndimage.binary_erosion(mask)
        ys, xs = np.nonzero(border)
        yy, xx = np.ogrid[:mask.shape[0], :mask.shape[1]]
        for _ in range(int(rng.integers(1, 3))):
            if len(xs) == 0:
                break
            j = int(rng.integers(len(xs)))
            disk = (yy - ys[j]) ** 2 + (xx - xs[j]) ** 2 <= int(rng.integers(3, 13)) ** 2
            changed = mask | disk if rng.random() < 0.5 else mask & ~disk
            mask = changed if changed.any() else mask
    return mask


def simulate(pe, md, official, emb, gt: np.ndarray, rounds: int, rng: np.random.Generator,
             scribble_p: float = 0.25, jitter: float = 0.3, grad_rounds: int = 1, near_p: float = 0.0,
             big_p: float = 0.0, mask_box_p: float = 0.0):
    """One interactive sample: round 0 the box through the official decoder (with probability
    ``near_p`` instead a nearly right mask, :func:`near_mask`, as logits of +/-8: the state of a
    propagated slice the user clicks on), then ``rounds`` corrections through the trained one;
    returns the list of (logits, iou, clicked) per graded round, where ``clicked`` is the union
    of the error regions the clicks so far pointed at (each taken when it was clicked: what
    :func:`click_region_loss` grades), the ground truth tensor and the DSC after each round
    (0 = box). A nearly right start (``big_p``: with a large error, :func:`near_mask`) is
    prompted, with probability ``mask_box_p``, with its own propagation box instead of one around
    the reference, as the library prompts a propagated slice (the box of its neighbour's mask):
    what the start missed then lies outside the box, where only the clicks say it belongs."""
    box = jittered_box(gt, rng)
    if near_p and rng.random() < near_p:
        start = near_mask(gt, rng, big_p)
        logits = as_logits(start)
        own = model_box(start) if mask_box_p and rng.random() < mask_box_p else None
        box = box if own is None else np.asarray(own, dtype=np.float64)
    else:
        with torch.no_grad():
            logits, _ = decode(official[0], official[1], emb, box, None, None, None)
    dscs = [dsc(logits[0, 0].numpy() > 0, gt)]
    coords, labels = np.zeros((0, 2)), np.zeros((0,), dtype=np.int64)
    clicked = np.zeros(gt.shape, dtype=bool)
    outputs = []
    for r in range(1, rounds + 1):
        pred = logits[0, 0].detach().numpy() > 0
        click = largest_error_click(pred, gt, rng, jitter)
        if click is None:
            break
        x, y, positive = click
        region = error_region(pred, gt, np.array([[x, y]]))
        clicked |= region
        if rng.random() < scribble_p:
            stroke = scribble_in_region(region, x, y, rng)
            new = sample_along(stroke)
        else:
            new = np.array([[x, y]], dtype=np.float64)
        coords = np.concatenate([coords, new])
        labels = np.concatenate([labels, np.full(len(new), int(positive))])
        with_grad = r > rounds - grad_rounds
        with torch.set_grad_enabled(with_grad):
            logits, iou = decode(pe, md, emb, box_with(box, coords, labels), coords, labels, logits.detach())
        dscs.append(dsc(logits[0, 0].detach().numpy() > 0, gt))
        if with_grad:
            outputs.append((logits, iou, torch.from_numpy(clicked.copy())[None, None]))
    return outputs, torch.from_numpy(gt.astype(np.float32))[None, None], dscs


def model_box(mask: np.ndarray) -> np.ndarray | None:
    """The propagation box of a 256-frame mask: the library's ``box_from_mask_model`` (its
    bounding box enlarged by 3); ``None`` when empty."""
    return box_from_mask_model(np.asarray(mask, dtype=np.uint8))


def grown(mask: np.ndarray, r: int) -> np.ndarray:
    """``mask`` dilated by ``r`` pixels (``r`` > 0) or eroded by ``-r`` (kept as it is when the
    erosion would empty it)."""
    if r > 0:
        return ndimage.binary_dilation(mask, iterations=r)
    if r < 0:
        eroded = ndimage.binary_erosion(mask, iterations=-r)
        return eroded if eroded.any() else mask
    return mask


def as_logits(mask: np.ndarray, logit: float = 8.0) -> torch.Tensor:
    """A 256-frame mask as a mask prompt ``(1, 1, 256, 256)`` of +/- ``logit``, as the library
    hands a corrected slice on."""
    return torch.from_numpy((mask.astype(np.float32) * 2 - 1) * logit)[None, None]


def perturbed_logits(gt: np.ndarray, rng: np.random.Generator, logit: float = 8.0) -> torch.Tensor:
    """A corrected slice as the library carries it on (its mask as logits of +/- ``logit``),
    from the reference mask eroded or dilated by up to 2 pixels (a correction is not perfect)."""
    return as_logits(grown(gt, int(rng.integers(-2, 3))), logit)


def chain_slices(length: int, steps: int) -> list[int]:
    """The slice of a run of ``length`` slices at each of ``steps`` carried steps after slice
    0: forward, then back and forth (0, 1, 2, 3, 2, 1, 0, 1, ... for 4 slices), so that a short
    cached run stands for a long sweep and the decoder meets its own drift."""
    period = 2 * (length - 1)
    return [(i % period if i % period < length else period - i % period) for i in range(1, steps + 1)]


def simulate_propagation(pe, md, official, embs: torch.Tensor, gts: np.ndarray, rng: np.random.Generator,
                         corrected_p: float = 0.3, grad: bool = True, baseline: bool = True,
                         steps: int | None = None, grad_steps: int | None = None):
    """One propagation run, swept as the library's carried box pass sweeps it: slice 0 through
    the official decoder with a jittered box (with probability ``corrected_p``: the reference
    mask as +/-8 logits, as a correction is carried on), each later slice through the trained
    decoder with the neighbour's mask box and the neighbour's logits (detached) as the mask
    prompt, until a mask comes out empty. ``steps`` carried steps (default: once through the
    run; more go back and forth, :func:`chain_slices`), the last ``grad_steps`` of them (default:
    all) with gradients. Returns ``(outputs, dsc_official, dsc_carried)``: ``outputs`` are
    ``(logits, iou, reference tensor)`` per graded step; ``dsc_official`` the box-only official
    decoder's DSC with the same boxes on those steps (``baseline``; else empty)."""
    if rng.random() < corrected_p:
        logits = perturbed_logits(gts[0], rng)
    else:
        with torch.no_grad():
            logits, _ = decode(official[0], official[1], embs[0:1], jittered_box(gts[0], rng), None, None, None)
    order = chain_slices(len(gts), steps or len(gts) - 1)
    graded_from = len(order) - (grad_steps or len(order))
    outputs, d_official, d_carried = [], [], []
    for i, k in enumerate(order):
        box = model_box(logits[0, 0].detach().numpy() > 0)
        if box is None:
            break
        emb = embs[k:k + 1]
        graded = i >= graded_from
        with torch.set_grad_enabled(grad and graded):
            logits, iou = decode(pe, md, emb, box, None, None, logits.detach())
        if not graded:
            continue
        outputs.append((logits, iou, torch.from_numpy(gts[k].astype(np.float32))[None, None]))
        d_carried.append(dsc(logits[0, 0].detach().numpy() > 0, gts[k]))
        if baseline:
            with torch.no_grad():
                plain, _ = decode(official[0], official[1], emb, box, None, None, None)
            d_official.append(dsc(plain[0, 0].numpy() > 0, gts[k]))
    return outputs, d_official, d_carried


def validate_propagation(pe, md, official, frames: Frames, samples: int = 24,
                         steps: int | None = None) -> tuple[list[float], list[float]]:
    """Mean DSC per carried step of held-out propagation runs (slice 0 the official box pass, no
    corrected starts; seeded): swept with the official decoder alone (each slice prompted with
    its neighbour's mask box, as the official pipeline) and carried through ``pe``/``md``;
    ``steps`` past the run's length go back and forth (:func:`chain_slices`: a long sweep's
    drift). A sweep that stopped (empty mask) scores 0 where the object goes on, 1 where it
    ended too."""
    names = (frames.seq_val or frames.seq_train)[:samples]
    if not names:
        return [], []
    length = len(frames.run(names[0])[1])
    order = chain_slices(length, steps or length - 1)
    sums = {"official": np.zeros(len(order) + 1), "carried": np.zeros(len(order) + 1)}
    for i, name in enumerate(names):
        embs, gts = frames.run(name)
        box0 = jittered_box(gts[0], np.random.default_rng(7 + i))
        with torch.no_grad():
            for which in sums:
                logits, _ = decode(official[0], official[1], embs[0:1], box0, None, None, None)
                sums[which][0] += dsc(logits[0, 0].numpy() > 0, gts[0])
                for j, k in enumerate(order, start=1):
                    box = model_box(logits[0, 0].numpy() > 0)
                    if box is None:
                        sums[which][j:] += np.array([float(not gts[kk].any()) for kk in order[j - 1:]])
                        break
                    if which == "official":
                        logits, _ = decode(official[0], official[1], embs[k:k + 1], box, None, None, None)
                    else:
                        logits, _ = decode(pe, md, embs[k:k + 1], box, None, None, logits)
                    sums[which][j] += dsc(logits[0, 0].numpy() > 0, gts[k])
    return list(sums["official"] / len(names)), list(sums["carried"] / len(names))


def validate(pe, md, official, frames: Frames, clicks: int = 5, samples: int = 32) -> list[float]:
    """Mean DSC after the box and after each of ``clicks`` centre clicks on held-out frames
    (fixed objects and boxes: seeded), no scribbles, no jitter."""
    names = (frames.val or frames.train)[:samples]  # the first held-out frames cached: a fixed set
    totals = np.zeros(clicks + 1)
    n = 0
    for i, name in enumerate(names):
        rng = np.random.default_rng(7 + i)
        emb, gt = frames.sample([name], rng)
        with torch.no_grad():
            _, _, d = simulate(pe, md, official, emb, gt, clicks, rng, scribble_p=0.0, jitter=0.0, grad_rounds=0)
        d = d + [d[-1]] * (clicks + 1 - len(d))
        totals += d
        n += 1
    return list(totals / max(n, 1))


def cmd_train(args: argparse.Namespace) -> int:
    import copy

    from LiteMedSAMLib.registry import load_model

    torch.set_num_threads(args.threads)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    model = load_model("litemedsam")
    official = (copy.deepcopy(model.prompt_encoder).eval(), copy.deepcopy(model.mask_decoder).eval())
    for p in list(official[0].parameters()) + list(official[1].parameters()):
        p.requires_grad_(False)
    if args.init:  # fine-tune a click decoder (e.g. the shipped one) instead of the official decoder
        parts = decoder_parts(Path(args.init))
        model.prompt_encoder.load_state_dict(parts["prompt_encoder"])
        model.mask_decoder.load_state_dict(parts["mask_decoder"])
        print(f"started from {args.init}", flush=True)
    pe, md = model.prompt_encoder.train(), model.mask_decoder.train()
    params = [p for p in list(pe.parameters()) + list(md.parameters())]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    step, samples, wall = 0, 0, 0.0
    ckpt = out / "last.pth"
    rng = np.random.default_rng(args.seed)
    if args.resume and ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        pe.load_state_dict(state["prompt_encoder"])
        md.load_state_dict(state["mask_decoder"])
        opt.load_state_dict(state["optimizer"])
        step, samples, wall = state["step"], state["samples"], state["wall_s"]
        rng = np.random.default_rng(args.seed + step)
        print(f"resumed at step {step}", flush=True)
    frames = Frames(Path(args.cache))
    log_path, val_path = out / "log.csv", out / "val.csv"
    new_log = not log_path.exists() or not args.resume
    log = open(log_path, "w" if new_log else "a", newline="")
    writer = csv.writer(log)
    if new_log:
        writer.writerow(["step", "samples", "wall_s", "loss", "dsc_before", "dsc_after", "rounds", "frames", "lr",
                         "prop_runs", "prop_official", "prop_carried"])
        with open(val_path, "w", newline="") as f:
            csv.writer(f).writerow(["step", "wall_s", "which"] + [f"dsc_{i}" for i in range(6)])
    start = time.perf_counter() - wall
    last_ckpt = last_val = time.perf_counter()
    deadline = time.perf_counter() + args.minutes * 60
    while time.perf_counter() < deadline and (args.steps is None or step < args.steps):
        if step % 50 == 0:
            frames.rescan()
        lr = args.lr * min(1.0, (step + 1) / args.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad()
        total, before, after, rounds_sum, clicks_n = 0.0, 0.0, 0.0, 0, 0
        prop_n, prop_official, prop_carried = 0, 0.0, 0.0
        for _ in range(args.accumulate):
            if frames.seq_train and rng.random() < args.propagation:
                embs, gts = frames.run(frames.seq_train[int(rng.integers(len(frames.seq_train)))])
                chain = int(rng.choice(args.chain_steps))  # long sweeps too (back and forth over the run)
                outputs, d_off, d_car = simulate_propagation(pe, md, official, embs, gts, rng, steps=chain,
                                                             grad_steps=min(chain, len(gts) - 1))
                if not outputs:
                    continue
                loss = sum(seg_loss(lg, g) + 0.1 * F.mse_loss(iou[:, 0], _iou(lg, g)) for lg, iou, g in outputs)
                loss = loss / len(outputs)
                (loss / args.accumulate).backward()
                total += loss.item()
                prop_n += 1
                prop_official += float(np.mean(d_off))
                prop_carried += float(np.mean(d_car))
                samples += 1
                continue
            emb, gt = frames.sample(frames.train, rng)
            rounds = int(rng.choice(np.arange(1, len(ROUND_WEIGHTS) + 1), p=ROUND_WEIGHTS))
            outputs, gt_t, d = simulate(pe, md, official, emb, gt, rounds, rng, grad_rounds=args.grad_rounds,
                                        near_p=args.near_start, big_p=args.big_error,
                                        mask_box_p=args.mask_box)
            if not outputs:
                continue
            loss = sum(seg_loss(lg, gt_t) for lg, _, _ in outputs) / len(outputs)
            if args.click_weight:  # the region loss only where asked for (the shipped recipe: 0)
                loss = loss + args.click_weight * sum(click_region_loss(lg, gt_t, clicked)
                                                      for lg, _, clicked in outputs) / len(outputs)
            # keep the IoU head meaningful (it is not used for the choice, but the decoder ships it)
            loss = loss + 0.1 * F.mse_loss(outputs[-1][1][:, 0], _iou(outputs[-1][0], gt_t))
            (loss / args.accumulate).backward()
            total += loss.item()
            before += d[-2]
            after += d[-1]
            rounds_sum += len(d) - 1
            clicks_n += 1
            samples += 1
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        wall = time.perf_counter() - start
        a, c = args.accumulate, max(clicks_n, 1)
        writer.writerow([step, samples, f"{wall:.1f}", f"{total / a:.5f}",
                         f"{before / c:.4f}" if clicks_n else "", f"{after / c:.4f}" if clicks_n else "",
                         rounds_sum, len(frames.train), f"{lr:.2e}", prop_n,
                         f"{prop_official / prop_n:.4f}" if prop_n else "",
                         f"{prop_carried / prop_n:.4f}" if prop_n else ""])
        log.flush()
        now = time.perf_counter()
        if now - last_ckpt > args.checkpoint_minutes * 60:
            _save(ckpt, pe, md, opt, step, samples, wall)
            last_ckpt = now
        if now - last_val > args.val_minutes * 60:
            pe.eval(), md.eval()
            _write_val(val_path, step, wall, "trained", validate(pe, md, official, frames))
            _write_val(val_path, step, wall, "prop-carried", validate_propagation(pe, md, official, frames)[1])
            pe.train(), md.train()
            last_val = time.perf_counter()
    _save(ckpt, pe, md, opt, step, samples, wall)
    pe.eval(), md.eval()
    _write_val(val_path, step, wall, "trained", validate(pe, md, official, frames))
    _write_val(val_path, step, wall, "official", validate(official[0], official[1], official, frames))
    prop_official, prop_carried = validate_propagation(pe, md, official, frames)
    _write_val(val_path, step, wall, "prop-carried", prop_carried)
    _write_val(val_path, step, wall, "prop-official", prop_official)
    log.close()
    plot(out)
    print(f"done: {step} steps, {samples} samples, {wall:.0f} s", flush=True)
    return 0


def _iou(logits: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """The true IoU of a prediction (the IoU head's target), shape ``(1,)``."""
    with torch.no_grad():
        p, g = logits > 0, gt > 0
        return ((p & g).sum() / ((p | g).sum() + 1e-6)).reshape(1)


def _save(path: Path, pe, md, opt, step: int, samples: int, wall: float) -> None:
    _atomic_save({"prompt_encoder": pe.state_dict(), "mask_decoder": md.state_dict(),
                  "optimizer": opt.state_dict(), "step": step, "samples": samples, "wall_s": wall}, path)


def _atomic_save(obj, path: Path) -> None:
    """``torch.save`` to a temporary beside ``path``, then renamed: a reader (training on a cache
    still being written, a resume after a kill) never sees half a file."""
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def _write_val(path: Path, step: int, wall: float, which: str, values: list[float]) -> None:
    if not values:  # e.g. no propagation runs cached
        return
    with open(path, "a", newline="") as f:
        csv.writer(f).writerow([step, f"{wall:.0f}", which] + [f"{v:.4f}" for v in values])
    print(f"val step {step} {which}: " + " ".join(f"{v:.3f}" for v in values), flush=True)


def plot(run: Path, output: Path | None = None) -> Path:
    """Loss (running mean) and DSC before/after the graded round against steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(open(run / "log.csv")))
    steps = np.array([int(r["step"]) for r in rows])
    loss = np.array([float(r["loss"]) for r in rows])
    k = max(1, len(rows) // 50)
    smooth = lambda v: np.convolve(v, np.ones(min(k, len(v))) / min(k, len(v)), mode="valid")  # noqa: E731
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    axes[0].plot(steps[k - 1:], smooth(loss))
    axes[0].set_xlabel("step"), axes[0].set_ylabel("loss (graded round / carried slices)")
    # DSC gains: of the graded click, and of the carry over the official box-only sweep
    for before, after, label in (("dsc_before", "dsc_after", "graded click"),
                                 ("prop_official", "prop_carried", "carry vs official")):
        have = [r for r in rows if r.get(after)]
        if have:
            gain = np.array([float(r[after]) - float(r[before]) for r in have])
            x = np.array([int(r["step"]) for r in have])
            axes[1].plot(x[len(x) - len(smooth(gain)):], smooth(gain), label=label)
    axes[1].set_xlabel("step"), axes[1].set_ylabel("DSC gain")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    output = output or run / "log.png"
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output


def decoder_parts(weights_path: Path) -> dict[str, dict[str, torch.Tensor]]:
    """A click decoder weights file (``prompt_encoder.*`` / ``mask_decoder.*``, as ``export``
    writes them) as ``{"prompt_encoder": state, "mask_decoder": state}``, floats as float32."""
    from LiteMedSAMLib.registry import read_state_dict

    parts: dict[str, dict[str, torch.Tensor]] = {"prompt_encoder": {}, "mask_decoder": {}}
    for key, value in read_state_dict(Path(weights_path)).items():
        part, _, name = key.partition(".")
        if part in parts:
            parts[part][name] = value.float() if value.is_floating_point() else value
    return parts


def average_with(state: dict, weights_path: Path, weight: float) -> dict:
    """``state``'s prompt encoder and decoder averaged with another click decoder's weights
    file: ``weight`` x the run + (1 - ``weight``) x the file, in float32 (a weight-space
    ensemble of a fine-tuned model with the one it started from, as WiSE-FT, Wortsman et al.
    2022: it keeps much of what each does well)."""
    other = decoder_parts(weights_path)
    averaged = dict(state)
    for part in ("prompt_encoder", "mask_decoder"):
        mixed = {}
        for key, value in state[part].items():
            theirs = other[part].get(key)
            if theirs is None or theirs.shape != value.shape:
                raise LiteMedSAMError(f"{weights_path} has no {part}.{key} of shape {tuple(value.shape)}: "
                                      "not a click decoder of this model")
            mixed[key] = (weight * value.float() + (1 - weight) * theirs).to(value.dtype) \
                if value.is_floating_point() else value
        averaged[part] = mixed
    return averaged


def cmd_export(args: argparse.Namespace) -> int:
    state = torch.load(Path(args.run) / "last.pth", weights_only=False)
    if args.average_with:
        state = average_with(state, Path(args.average_with), args.average_weight)
    weights = {f"prompt_encoder.{k}": v for k, v in state["prompt_encoder"].items()}
    weights.update({f"mask_decoder.{k}": v for k, v in state["mask_decoder"].items()})
    if args.fp16:
        weights = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    torch.save(weights, args.output)
    from LiteMedSAMLib.registry import file_sha256

    entry = {"filename": Path(args.output).name, "sha256": file_sha256(Path(args.output)),
             "size": Path(args.output).stat().st_size, "card": Path(args.output).stem + ".md",
             "trained_with": "Training/click_decoder.py", "steps": state["step"], "samples": state["samples"],
             "box_pass": ("official decoder on the start slice; on slices at most 1.5 mm apart the default "
                          "pipeline propagates through the click decoder (box + the neighbour's logits); "
                          "corrections and the slices re-propagated from them use the click decoder"),
             "correction": args.correction}
    if args.check_cache:
        entry["fp16_check"] = fp16_check(state, Path(args.check_cache))
    if args.manifest:  # register it on the model's manifest entry (keeps the file's key order)
        register(Path(args.manifest), args.model, entry)
    print(json.dumps(entry | {"wall_s": round(state["wall_s"])}))
    return 0


def fp16_check(state: dict, cache: Path, samples: int = 16) -> str:
    """Run the 5-click simulation on held-out frames with the float32 weights and with the same
    weights rounded to float16 (the shipped file); say how many mask pixels differ."""
    import copy

    from LiteMedSAMLib.registry import load_model

    model = load_model("litemedsam")
    official = (copy.deepcopy(model.prompt_encoder).eval(), copy.deepcopy(model.mask_decoder).eval())
    pe, md = model.prompt_encoder, model.mask_decoder
    frames = Frames(cache)
    names = (frames.val or frames.train)[:samples]
    results = {}
    for precision in ("f32", "f16"):
        cast = (lambda v: v.half().float()) if precision == "f16" else (lambda v: v)
        pe.load_state_dict({k: cast(v) if v.is_floating_point() else v for k, v in state["prompt_encoder"].items()})
        md.load_state_dict({k: cast(v) if v.is_floating_point() else v for k, v in state["mask_decoder"].items()})
        pe.eval(), md.eval()
        masks = []
        for i, name in enumerate(names):
            rng = np.random.default_rng(7 + i)
            emb, gt = frames.sample([name], rng)
            with torch.no_grad():
                outputs, _, d = simulate(pe, md, official, emb, gt, 5, rng, scribble_p=0.0, jitter=0.0,
                                         grad_rounds=5)
            masks.append(np.stack([o[0][0, 0].detach().numpy() > 0 for o in outputs]) if outputs else np.zeros((0,)))
        results[precision] = masks
    differ = sum(int(np.count_nonzero(a != b)) if a.shape == b.shape else a.size
                 for a, b in zip(results["f32"], results["f16"]))
    total = sum(a.size for a in results["f32"])
    return f"{differ} of {total} mask pixels differ (5 clicks on {len(names)} held-out frames)"


def register(manifest: Path, model: str, entry: dict) -> None:
    """Set ``entry`` as the ``click_decoder`` of ``model`` in a manifest, as one line inserted
    before (or replacing) the entry's ``click_decoder`` line, so the rest of the file stays as
    written (no reformatting, small diffs)."""
    import re

    text = manifest.read_text()
    start = text.index(f'"{model}": {{')
    line = f'"click_decoder": {json.dumps(entry)},'
    existing = re.compile(r'"click_decoder": \{[^\n]*\},')
    match = existing.search(text, start)
    end_of_entry = text.find('\n    },', start)
    if match and (end_of_entry < 0 or match.start() < end_of_entry):
        text = text[:match.start()] + line + text[match.end():]
    else:
        at = text.index('"license"', start)
        text = text[:at] + line + "\n      " + text[at:]
    json.loads(text)  # still valid
    manifest.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m Training.click_decoder", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cache", help="encode training frames once (fp16 embeddings + label frames)")
    c.add_argument("--index", help="index.json of cases (only split == 'train' are used)")
    c.add_argument("--pair", nargs="+", default=[], help="IMAGE LABEL [IMAGE LABEL ...] instead of --index")
    c.add_argument("-o", "--output", required=True)
    c.add_argument("--frames", type=int, default=1200)
    c.add_argument("--case-frames", nargs="*", default=[], help="NAME=COUNT per case (default: --frames / cases)")
    c.add_argument("--sequences", type=int, default=0,
                   help="propagation runs in all (K slices of one object each; 3-D volumes only)")
    c.add_argument("--sequence-length", type=int, default=4, help="slices per propagation run (K)")
    c.add_argument("--max-gap-mm", type=float, default=3.5,
                   help="propagation runs' slices at most this far apart (mm; axes with thicker slices are skipped)")
    c.add_argument("--threads", type=int, default=None)
    c.add_argument("--seed", type=int, default=13)
    c.set_defaults(func=cmd_cache)
    t = sub.add_parser("train", help="train the prompt encoder and mask decoder on simulated clicks")
    t.add_argument("--cache", required=True)
    t.add_argument("-o", "--output", required=True)
    t.add_argument("--minutes", type=float, default=55)
    t.add_argument("--steps", type=int, default=None)
    t.add_argument("--lr", type=float, default=5e-5)
    t.add_argument("--warmup", type=int, default=30)
    t.add_argument("--accumulate", type=int, default=4)
    t.add_argument("--grad-rounds", type=int, default=1)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--checkpoint-minutes", type=float, default=4)
    t.add_argument("--val-minutes", type=float, default=10)
    t.add_argument("--seed", type=int, default=13)
    t.add_argument("--resume", action="store_true")
    t.add_argument("--init", help="start from these click decoder weights (e.g. the shipped ones), not the official")
    t.add_argument("--chain-steps", type=int, nargs="+", default=[3],
                   help="carried steps of a propagation sample, drawn from these (more than K-1: back and "
                        "forth over the run; the last K-1 graded)")
    t.add_argument("--click-weight", type=float, default=0.0,
                   help="weight of a BCE averaged over the error regions the clicks pointed at alone "
                        "(click_region_loss), added to the whole-frame loss; 0: the frame loss only")
    t.add_argument("--near-start", type=float, default=0.0,
                   help="share of correction samples that start from a nearly right mask (near_mask) instead "
                        "of the box's result: clicks on thin rims and bumps, as on a propagated slice")
    t.add_argument("--big-error", type=float, default=0.0,
                   help="share of the nearly right starts (--near-start) that also miss or leak a large part")
    t.add_argument("--mask-box", type=float, default=0.0,
                   help="share of the nearly right starts prompted with their own propagation box, not the "
                        "reference's (as the library prompts a propagated slice)")
    t.add_argument("--propagation", type=float, default=0.5,
                   help="share of samples that are propagation runs, when the cache has them")
    t.set_defaults(func=cmd_train)
    e = sub.add_parser("export", help="write the trained prompt encoder + decoder weights")
    e.add_argument("--run", required=True)
    e.add_argument("-o", "--output", required=True)
    e.add_argument("--fp16", action="store_true")
    e.add_argument("--average-with", help="average the run's weights with this click decoder file (e.g. the one "
                                           "it was fine-tuned from) before writing them")
    e.add_argument("--average-weight", type=float, default=0.5, help="the run's share in the average")
    e.add_argument("--check-cache", help="frame cache: compare the fp16 weights' masks with float32")
    e.add_argument("--manifest", help="models.json to register the decoder in (click_decoder entry)")
    e.add_argument("--model", default="litemedsam", help="the manifest entry that gets it")
    e.add_argument("--correction", default="trained", choices=["trained", "trained-edit"],
                   help="the default correction strategy with this decoder (measure, then choose)")
    e.set_defaults(func=cmd_export)
    p = sub.add_parser("plot", help="plot a run's log")
    p.add_argument("--run", required=True)
    p.add_argument("-o", "--output")
    p.set_defaults(func=lambda a: (print(plot(Path(a.run), Path(a.output) if a.output else None)), 0)[1])
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
