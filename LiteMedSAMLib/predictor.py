"""A stateful predictor: set a volume once, prompt its slices many times.

In the style of Segment Anything's ``SamPredictor``: :meth:`VolumePredictor.set_volume`
takes the raw image and an intensity preset; each slice's image embedding is computed the
first time a prompt needs it and kept in an LRU cache, so prompting the same slice again
(another box, a re-run, a correction) costs only the prompt encoder and mask decoder.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from .errors import LiteMedSAMError
from .preprocessing import (
    MODEL_INPUT_SIZE,
    IntensityMapping,
    box_from_mask_model,
    box_to_model,
    intensity_mapping,
    logits_to_mask,
    points_to_model,
    prepare_slice,
    resized_shape,
)

log = logging.getLogger(__name__)

DEFAULT_CACHE_SLICES = 128  # 4 MiB per embedding: 512 MiB at most


@dataclass
class SlicePrediction:
    """Result of one prompt on one slice.

    ``mask`` is uint8 ``[H, W]`` at the slice's size; ``iou`` the model's own quality
    estimate; ``low_res_logits`` ``(1, 1, 256, 256)`` can be fed back as a mask prompt.
    """

    mask: np.ndarray
    iou: float
    low_res_logits: torch.Tensor


@dataclass(frozen=True)
class Frame:
    """What the model is shown of a slice, when it is not the official whole slice.

    ``[y0:y1, x0:x1]`` (exclusive ends) is the crop that is resized to the model's 256 x 256
    input (crop-and-zoom: a small object covers more model pixels); ``mapping`` replaces the
    volume's intensity mapping (a window from the box's own voxels), or ``None`` to keep it.
    Masks are pasted back onto the whole slice at exactly the crop's pixels.
    """

    x0: int
    y0: int
    x1: int
    y1: int
    mapping: IntensityMapping | None = None
    # the crop is shown mirrored left-right (test-time flip: :class:`FlipView`)
    flip: bool = False

    @property
    def hw(self) -> tuple[int, int]:
        """``(height, width)`` of the crop."""
        return self.y1 - self.y0, self.x1 - self.x0

    @property
    def offset(self) -> np.ndarray:
        """The crop's top-left corner ``(x, y)`` in slice pixels."""
        return np.array([self.x0, self.y0], dtype=np.float64)


def check_volume(volume: np.ndarray) -> tuple[np.ndarray, bool]:
    """Validate an image array and return it as ``[z, y, x]`` or ``[z, y, x, 3]`` plus an RGB flag.

    Accepts 2D grayscale ``[y, x]``, 2D RGB(A) ``[y, x, 3|4]`` (uint8), 3D grayscale
    ``[z, y, x]`` and stacks of RGB slices ``[z, y, x, 3]``.
    """
    volume = np.asarray(volume)
    if volume.dtype == bool or volume.dtype.kind not in "uif":
        raise LiteMedSAMError(f"image voxels must be numbers, got dtype {volume.dtype}")
    if volume.size == 0:
        raise LiteMedSAMError(f"the image is empty (shape {volume.shape})")
    rgb = volume.shape[-1] in (3, 4) and volume.dtype == np.uint8
    if volume.ndim == 2:
        volume, rgb = volume[None], False
    elif volume.ndim == 3 and rgb:
        volume = volume[None, :, :, :3]  # a 2D RGB(A) image
    elif volume.ndim == 4 and rgb:
        volume = volume[..., :3]  # a stack of RGB slices
    elif volume.ndim != 3:
        raise LiteMedSAMError(f"expected a 2D or 3D image (or RGB), got {volume.ndim} dimensions "
                              f"with shape {volume.shape}; 4D (time series, multi-channel) images "
                              "must be split into 3D volumes first")
    else:
        rgb = False
    if volume.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(volume)))
        if bad:
            raise LiteMedSAMError(f"the image has {bad} NaN or infinite voxels; fill or mask them first")
    return volume, rgb


class VolumePredictor:
    """Box (and point/mask) prompted segmentation of the slices of one volume.

    Args:
        model: a loaded :class:`~LiteMedSAMLib.modeling.LiteMedSAM` (see ``registry.load_model``).
        cache_slices: how many slice embeddings to keep (least recently used are dropped).
        encoder: what turns a ``(1, 3, 256, 256)`` input into a ``(1, 256, 64, 64)`` embedding;
            default ``model.encode`` (eager PyTorch). Faster backends plug in here.
        decoder: same signature as ``model.decode`` (embedding, boxes=, points=, mask_input=)
            -> (logits, iou); default ``model.decode``. See ``LiteMedSAMLib.backends``.
    """

    def __init__(self, model, cache_slices: int = DEFAULT_CACHE_SLICES,
                 encoder: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 decoder: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None) -> None:
        self.model = model
        self.encoder = encoder or model.encode
        self.decoder = decoder or model.decode
        self.device = next(model.parameters()).device
        self.cache_slices = max(1, int(cache_slices))
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._volume: np.ndarray | None = None
        self.mapping: IntensityMapping | None = None
        self.is_rgb = False
        self.slice_spacing: float | None = None  # mm between slices, when the caller knows it
        self.spacing_noted = False  # whether a session said that the unknown spacing turns levers off
        self.encoder_runs = 0  # how many slices were encoded: lets tests and benchmarks see cache hits

    # ----------------------------------------------------------------------------- set-up
    def set_volume(self, volume: np.ndarray, preset: str = "auto",
                   window: tuple[float, float] | None = None, slice_spacing: float | None = None) -> None:
        """Use ``volume`` (``[z, y, x]``, 2D, or RGB; see :func:`check_volume`) from now on.

        The intensity mapping to uint8 is computed here over the whole volume (``preset`` /
        ``window``, see :mod:`~LiteMedSAMLib.preprocessing`); the cache is cleared.
        The array is referenced, not copied, and never modified. ``slice_spacing`` is the
        distance between its slices in mm (``None``: unknown); pipelines whose levers depend on
        it read it (the default carries each slice into the next only on thin slices).
        """
        volume, rgb = check_volume(volume)
        if slice_spacing is not None and not (np.isfinite(slice_spacing) and slice_spacing > 0):
            raise LiteMedSAMError(f"slice spacing must be a positive number of mm, got {slice_spacing}")
        self.mapping = intensity_mapping(volume, "none" if rgb else preset, None if rgb else window)
        self._volume, self.is_rgb = volume, rgb
        self.slice_spacing = None if slice_spacing is None else float(slice_spacing)
        self.spacing_noted = False
        self._cache.clear()

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(z, y, x)`` of the current volume."""
        if self._volume is None:
            raise LiteMedSAMError("no image set: call set_volume() first")
        return tuple(self._volume.shape[:3])  # type: ignore[return-value]

    def slice_uint8(self, z: int) -> np.ndarray:
        """The intensity-normalised slice ``z`` (``[y, x]`` or ``[y, x, 3]`` uint8)."""
        self.check_slice(z)
        return self.mapping.apply(self._volume[z])

    def viewed_slice(self, z: int) -> np.ndarray:
        """The whole slice ``z`` under the intensity mapping this predictor shows the model
        (for image-driven edits on the slice grid, such as a correction's edge cut)."""
        return self.slice_uint8(z)

    def check_slice(self, z: int) -> None:
        """Raise a clear error unless ``z`` is a slice index of the current volume."""
        nz = self.shape[0]
        if not isinstance(z, (int, np.integer)) or not 0 <= z < nz:
            raise LiteMedSAMError(f"slice index {z} is out of range: the image has {nz} slices (0..{nz - 1})")

    # ----------------------------------------------------------------------------- encoder
    def embedding(self, z: int, frame: Frame | None = None) -> torch.Tensor:
        """Image embedding ``(1, 256, 64, 64)`` of slice ``z`` (seen through ``frame``, if
        given), from the cache when possible."""
        self.check_slice(z)
        z = int(z)
        key = z if frame is None else (z, frame)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        image = prepare_slice(self.frame_uint8(z, frame)).to(self.device)
        emb = self.encoder(image)
        self.encoder_runs += 1
        self._cache[key] = emb
        while len(self._cache) > self.cache_slices:
            self._cache.popitem(last=False)
        return emb

    def is_encoded(self, z: int, frame: Frame | None = None) -> bool:
        return (int(z) if frame is None else (int(z), frame)) in self._cache

    def frame_uint8(self, z: int, frame: Frame | None = None) -> np.ndarray:
        """The uint8 image the model is shown of slice ``z``: the whole normalised slice, or
        ``frame``'s crop with ``frame``'s intensity mapping."""
        if frame is None:
            return self.slice_uint8(z)
        self.check_slice(z)
        mapping = frame.mapping or self.mapping
        image = mapping.apply(self._volume[z, frame.y0:frame.y1, frame.x0:frame.x1])
        return np.ascontiguousarray(np.fliplr(image)) if frame.flip else image

    def raw_region(self, z0: int, z1: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Raw voxels ``[z0:z1, y0:y1, x0:x1]`` (a view; for windows computed from a box)."""
        return self._volume[z0:z1, y0:y1, x0:x1]

    # ----------------------------------------------------------------------------- model space
    # The whole-slice (official) transforms; FramedPredictor has the same four for a crop.
    def box_to_model(self, box2d) -> np.ndarray:
        """An inclusive pixel box ``(x0, y0, x1, y1)`` of a slice in model (256) coordinates."""
        return box_to_model(box2d, self.shape[1:])

    def points_to_model(self, points: np.ndarray) -> np.ndarray:
        """``(N, 2)`` pixel points (x, y) in model coordinates."""
        return points_to_model(points, self.shape[1:])

    def box_from_mask(self, mask: np.ndarray) -> np.ndarray | None:
        """The official propagation box (model space) of a slice mask, or None when empty."""
        return box_from_mask_model(mask)

    @property
    def pixels_per_model_unit(self) -> float:
        """Slice pixels per model pixel along the longest side."""
        return max(self.shape[1:]) / MODEL_INPUT_SIZE

    @property
    def base(self) -> VolumePredictor:
        """The predictor that holds the volume and cache (itself; a frame view's owner)."""
        return self

    # ----------------------------------------------------------------------------- decoder
    def _decode(self, z: int, box_model: np.ndarray | None, points_model: np.ndarray | None,
                point_labels: np.ndarray | None, mask_input: torch.Tensor | None,
                multimask: bool, frame: Frame | None = None,
                decoder: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None,
                embedding: torch.Tensor | None = None) -> list[SlicePrediction]:
        emb = self.embedding(z, frame) if embedding is None else embedding
        decoder = decoder or self.decoder
        h, w = self.shape[1:] if frame is None else frame.hw
        boxes = None
        if box_model is not None:
            boxes = torch.as_tensor(np.asarray(box_model)[None, None, :], dtype=torch.float,
                                    device=self.device)
        points = None
        if points_model is not None and len(points_model):
            coords = torch.as_tensor(np.asarray(points_model)[None], dtype=torch.float, device=self.device)
            labels = torch.as_tensor(np.asarray(point_labels)[None], dtype=torch.int, device=self.device)
            points = (coords, labels)
        if multimask:
            logits, iou = decoder(emb, boxes=boxes, points=points, mask_input=mask_input,
                                  multimask_output=True)
        else:
            logits, iou = decoder(emb, boxes=boxes, points=points, mask_input=mask_input)
        # each output's logits are its own copy: a view would keep the decoder's whole output
        # (SAM's four masks, 1 MB) alive for as long as a session keeps the slice's logits
        return [SlicePrediction(self._paste(logits_to_mask(logits[:, i:i + 1], (h, w)), frame),
                                float(iou[0, i]), logits[:, i:i + 1].clone()) for i in range(logits.shape[1])]

    def _paste(self, mask: np.ndarray, frame: Frame | None) -> np.ndarray:
        """A frame's mask pasted onto the whole slice (zero outside the crop)."""
        if frame is None:
            return mask
        full = np.zeros(self.shape[1:], dtype=np.uint8)
        full[frame.y0:frame.y1, frame.x0:frame.x1] = mask
        return full

    def predict_model_box(self, z: int, box_model: np.ndarray | None,
                          points_model: np.ndarray | None = None,
                          point_labels: np.ndarray | None = None,
                          mask_input: torch.Tensor | None = None,
                          frame: Frame | None = None,
                          decoder: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None,
                          embedding: torch.Tensor | None = None) -> SlicePrediction:
        """Prompt slice ``z`` with a box already in model (256) coordinates (of ``frame``'s crop
        when given); the decoder's single-mask output, which LiteMedSAM is trained and used with.
        ``decoder`` replaces the predictor's decoder for this call (the trained click decoder of
        corrections); ``embedding`` the slice's own (an :class:`InterpolatedView`'s mean of its
        neighbours')."""
        return self._decode(z, box_model, points_model, point_labels, mask_input, False, frame,
                            decoder=decoder, embedding=embedding)[0]

    def predict_multimask(self, z: int, box_model: np.ndarray | None,
                          points_model: np.ndarray | None = None,
                          point_labels: np.ndarray | None = None,
                          mask_input: torch.Tensor | None = None,
                          frame: Frame | None = None,
                          embedding: torch.Tensor | None = None) -> list[SlicePrediction]:
        """Like :meth:`predict_model_box`, but SAM's three multimask outputs (one decoder run).

        They were not fine-tuned for boxes, yet follow point prompts far better than the
        single output (see :mod:`~LiteMedSAMLib.refinement`).
        """
        return self._decode(z, box_model, points_model, point_labels, mask_input, True, frame,
                            embedding=embedding)

    def predict_slice(self, z: int, box: tuple[float, float, float, float] | None,
                      points: np.ndarray | None = None, point_labels: np.ndarray | None = None,
                      mask_input: torch.Tensor | None = None) -> SlicePrediction:
        """Segment slice ``z`` inside ``box`` = (x0, y0, x1, y1) in pixel indices of the slice.

        Optional ``points`` ``(N, 2)`` (x, y) pixels with ``point_labels`` (1 inside, 0
        outside) and ``mask_input`` (the ``low_res_logits`` of an earlier prediction) refine
        the result. The box is scaled to the model exactly as the official script does.
        """
        from .boxes import check_box2d

        h, w = self.shape[1:]
        box_model = None
        if box is not None:
            box2d, notes = check_box2d(box, (h, w))
            for note in notes:
                log.warning(note)
            box_model = box_to_model(box2d, (h, w))
        points_model = None
        if points is not None and len(points):
            points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
            if point_labels is None or len(point_labels) != len(points):
                raise LiteMedSAMError("give one label (1 inside, 0 outside) per point")
            points_model = points_to_model(points, (h, w))
        if box_model is None and points_model is None:
            raise LiteMedSAMError("a prompt needs a box or at least one point")
        return self.predict_model_box(z, box_model, points_model, point_labels, mask_input)


class FramedPredictor:
    """One object's view of a :class:`VolumePredictor` through a :class:`Frame`.

    It has the predictor's interface (``shape``, ``predict_model_box``, ``predict_multimask``,
    the model-space transforms, ...), so propagation and :class:`~LiteMedSAMLib.refinement.
    RefinementSession` run unchanged on a crop: boxes and points are moved into the crop and
    scaled to the model, masks come back on the whole slice. Embeddings are cached in the
    underlying predictor under ``(slice, frame)``.
    """

    def __init__(self, predictor: VolumePredictor, frame: Frame) -> None:
        self.predictor, self.frame = predictor, frame

    def __getattr__(self, name: str):
        return getattr(self.predictor, name)

    @property
    def base(self) -> VolumePredictor:
        return self.predictor

    def embedding(self, z: int) -> torch.Tensor:
        return self.predictor.embedding(z, self.frame)

    def is_encoded(self, z: int) -> bool:
        return self.predictor.is_encoded(z, self.frame)

    def viewed_slice(self, z: int) -> np.ndarray:
        """The whole slice ``z`` under this frame's intensity mapping (the model sees its crop)."""
        _, h, w = self.shape
        return self.predictor.frame_uint8(z, replace(self.frame, x0=0, y0=0, x1=w, y1=h))

    def predict_model_box(self, z, box_model, points_model=None, point_labels=None,
                          mask_input=None, decoder=None, embedding=None) -> SlicePrediction:
        return self.predictor.predict_model_box(z, box_model, points_model, point_labels, mask_input,
                                                frame=self.frame, decoder=decoder, embedding=embedding)

    def predict_multimask(self, z, box_model, points_model=None, point_labels=None,
                          mask_input=None, embedding=None) -> list[SlicePrediction]:
        return self.predictor.predict_multimask(z, box_model, points_model, point_labels, mask_input,
                                                frame=self.frame, embedding=embedding)

    def box_to_model(self, box2d) -> np.ndarray:
        x0, y0, x1, y1 = (float(v) for v in box2d)
        f = self.frame
        local = (min(max(x0 - f.x0, 0), f.x1 - f.x0 - 1), min(max(y0 - f.y0, 0), f.y1 - f.y0 - 1),
                 min(max(x1 - f.x0, 0), f.x1 - f.x0 - 1), min(max(y1 - f.y0, 0), f.y1 - f.y0 - 1))
        return box_to_model(local, f.hw)

    def points_to_model(self, points: np.ndarray) -> np.ndarray:
        return points_to_model(np.asarray(points, dtype=np.float64) - self.frame.offset, self.frame.hw)

    def box_from_mask(self, mask: np.ndarray) -> np.ndarray | None:
        f = self.frame
        return box_from_mask_model(np.ascontiguousarray(mask[f.y0:f.y1, f.x0:f.x1]))

    @property
    def pixels_per_model_unit(self) -> float:
        return max(self.frame.hw) / MODEL_INPUT_SIZE


class InterpolatedView:
    """One object's sweep with every other slice decoded from its neighbours' embeddings.

    On thin slices an image changes little from one slice to the next, and so does its
    embedding: the slices at an odd distance from ``anchor`` (the start slice) whose two
    neighbours lie inside ``z_range`` (the sweep's inclusive slice range) are never encoded;
    their embedding is the mean of the two neighbours' (encoded and cached in the predictor as
    any slice is; the mean is recomputed, ~1 ms, rather than cached). About half the encoder
    runs of a sweep, the slow part of each slice; the decoders run on every slice as before, so
    the box pass, the carry and corrections see every slice.
    Pipeline levers ``interp`` and ``interpsize`` (the default's: only for boxes at least 16
    model pixels each way; :mod:`~LiteMedSAMLib.pipeline`); wraps a predictor or a
    :class:`FramedPredictor` and keeps its interface.
    """

    def __init__(self, view, anchor: int, z_range: tuple[int, int]) -> None:
        self.view, self.anchor = view, int(anchor)
        self.z_range = (int(z_range[0]), int(z_range[1]))

    def __getattr__(self, name: str):
        return getattr(self.view, name)

    def interpolated(self, z: int) -> bool:
        """Whether slice ``z`` is decoded from its neighbours' mean embedding."""
        z0, z1 = self.z_range
        return (int(z) - self.anchor) % 2 == 1 and z0 < z < z1

    def embedding(self, z: int) -> torch.Tensor:
        if not self.interpolated(z):
            return self.view.embedding(z)
        return 0.5 * (self.view.embedding(z - 1) + self.view.embedding(z + 1))

    def is_encoded(self, z: int) -> bool:
        """Whether slice ``z`` can be decoded without an encoder run."""
        if not self.interpolated(z):
            return self.view.is_encoded(z)
        return self.view.is_encoded(z - 1) and self.view.is_encoded(z + 1)

    def _own(self, z: int) -> torch.Tensor | None:
        return self.embedding(z) if self.interpolated(z) else None

    def predict_model_box(self, z, box_model, points_model=None, point_labels=None,
                          mask_input=None, decoder=None) -> SlicePrediction:
        return self.view.predict_model_box(z, box_model, points_model, point_labels, mask_input,
                                           decoder=decoder, embedding=self._own(z))

    def predict_multimask(self, z, box_model, points_model=None, point_labels=None,
                          mask_input=None) -> list[SlicePrediction]:
        return self.view.predict_multimask(z, box_model, points_model, point_labels, mask_input,
                                           embedding=self._own(z))


class EnsembleView:
    """One object seen through several intensity mappings of the same slice grid at once.

    Every prompt goes to each view (the volume's own mapping and a box window, say); their
    low-resolution logits are averaged and the mask is the average's. The views must share
    their geometry (whole slice or the same crop) so that their logits line up pixel for
    pixel; everything that is not a prediction (shape, transforms, the model) is the first
    view's. Used by the pipeline lever ``ensemble`` (:mod:`~LiteMedSAMLib.pipeline`).
    """

    def __init__(self, views: list) -> None:
        if len(views) < 2:
            raise LiteMedSAMError("an ensemble needs at least two views")
        if len({_view_rect(v) for v in views}) != 1:
            raise LiteMedSAMError("the views of an ensemble must show the same part of the slice")
        self.views = list(views)
        self._frame = getattr(views[0], "frame", None)  # None: the whole slice

    def __getattr__(self, name: str):
        return getattr(self.views[0], name)

    def _mean(self, predictions: list[SlicePrediction]) -> SlicePrediction:
        return _averaged(self.views[0], self._frame, [p.low_res_logits for p in predictions],
                         [p.iou for p in predictions])

    def predict_model_box(self, z, box_model, points_model=None, point_labels=None,
                          mask_input=None, decoder=None) -> SlicePrediction:
        return self._mean([v.predict_model_box(z, box_model, points_model, point_labels, mask_input,
                                               decoder=decoder) for v in self.views])

    def predict_multimask(self, z, box_model, points_model=None, point_labels=None,
                          mask_input=None) -> list[SlicePrediction]:
        per_view = [v.predict_multimask(z, box_model, points_model, point_labels, mask_input)
                    for v in self.views]
        return [self._mean(list(outputs)) for outputs in zip(*per_view)]


def _averaged(view, frame: Frame | None, logits: list[torch.Tensor], ious: list[float]) -> SlicePrediction:
    """One prediction from several of ``view`` (seen through ``frame``; ``None``: the whole
    slice): the mean of their logits and predicted IoUs, and the mean's mask on the slice."""
    mean = torch.stack(logits).mean(dim=0)
    hw = view.shape[1:] if frame is None else frame.hw
    return SlicePrediction(view.base._paste(logits_to_mask(mean, hw), frame), float(np.mean(ious)), mean)


def _view_rect(view) -> tuple[int, int, int, int]:
    """The part of the slice a predictor or frame view shows, ``(x0, y0, x1, y1)``."""
    frame = getattr(view, "frame", None)
    if frame is None:
        return 0, 0, view.shape[2], view.shape[1]
    return frame.x0, frame.y0, frame.x1, frame.y1


class FlipView:
    """Test-time flip: each prompt is also given to the slice mirrored left-right, and the
    two low-resolution logits (the mirrored one mirrored back) are averaged.

    Wraps a predictor or a :class:`FramedPredictor` and keeps its interface and its model space
    (boxes, points, mask prompts and logits are those of the unmirrored view); the mirrored
    image is encoded and cached under its own :class:`Frame` (``flip=True``), so each slice
    costs two encoder runs and two decoder runs. Pipeline lever ``flip``
    (:mod:`~LiteMedSAMLib.pipeline`).
    """

    def __init__(self, view) -> None:
        self.view = view
        _, h, w = view.shape
        self._frame = getattr(view, "frame", None)  # None: the whole slice
        frame = self._frame or Frame(0, 0, w, h)
        self._mirrored = replace(frame, flip=True)
        fh, fw = frame.hw
        self._scale = MODEL_INPUT_SIZE / max(fh, fw)
        self._width = fw                            # the crop's width in slice pixels
        self._content = resized_shape(fh, fw)[1]    # model columns that hold the image

    def __getattr__(self, name: str):
        return getattr(self.view, name)

    def _mirror_x(self, x: np.ndarray) -> np.ndarray:
        """Model-space x of pixel coordinates, mirrored: pixel x -> width - 1 - x."""
        return (self._width - 1) * self._scale - x

    def _mirror_logits(self, logits: torch.Tensor) -> torch.Tensor:
        out = logits.clone()
        out[..., :self._content] = torch.flip(logits[..., :self._content], dims=[-1])
        return out

    def _mirrored_prompts(self, box_model, points_model, mask_input):
        box = None
        if box_model is not None:
            x0, y0, x1, y1 = (float(v) for v in np.asarray(box_model))
            box = np.array([self._mirror_x(x1), y0, self._mirror_x(x0), y1], dtype=np.float64)
        points = None
        if points_model is not None and len(points_model):
            points = np.array(points_model, dtype=np.float64)
            points[:, 0] = self._mirror_x(points[:, 0])
        mask = None if mask_input is None else self._mirror_logits(mask_input)
        return box, points, mask

    def _mean(self, plain: SlicePrediction, mirrored: SlicePrediction) -> SlicePrediction:
        return _averaged(self.view, self._frame, [plain.low_res_logits, self._mirror_logits(mirrored.low_res_logits)],
                         [plain.iou, mirrored.iou])

    def predict_model_box(self, z, box_model, points_model=None, point_labels=None,
                          mask_input=None, decoder=None) -> SlicePrediction:
        plain = self.view.predict_model_box(z, box_model, points_model, point_labels, mask_input,
                                            decoder=decoder)
        box, points, mask = self._mirrored_prompts(box_model, points_model, mask_input)
        mirrored = self.view.base.predict_model_box(z, box, points, point_labels, mask, frame=self._mirrored,
                                                    decoder=decoder)
        return self._mean(plain, mirrored)

    def predict_multimask(self, z, box_model, points_model=None, point_labels=None,
                          mask_input=None) -> list[SlicePrediction]:
        plain = self.view.predict_multimask(z, box_model, points_model, point_labels, mask_input)
        box, points, mask = self._mirrored_prompts(box_model, points_model, mask_input)
        mirrored = self.view.base.predict_multimask(z, box, points, point_labels, mask, frame=self._mirrored)
        return [self._mean(p, m) for p, m in zip(plain, mirrored)]
