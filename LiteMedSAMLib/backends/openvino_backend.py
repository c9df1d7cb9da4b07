"""OpenVINO encoder and decoder for LiteMedSAM, converted once and cached on disk.

The image encoder (TinyViT, ~75 GFLOP per slice) is converted from our PyTorch module with
``openvino.convert_model`` and saved as OpenVINO IR in the cache folder (see
:func:`cache_dir`), under a name that holds the weights' SHA-256, the OpenVINO version and
:data:`BACKEND_VERSION`; a later construction with the same weights loads the IR instead of
converting again. Each cache entry carries a checksum and is written under temporary
names, then renamed, under a lock (see :func:`cached_model`): a truncated or corrupt entry is
rebuilt, two processes converting at once both succeed, a read-only folder means no caching.
Precisions:

- ``"f32"``: float32 throughout (``INFERENCE_PRECISION_HINT=f32``); embeddings agree with
  eager PyTorch to ~1e-5, masks are identical (the exact mode).
- ``"bf16"``: the same IR run with bfloat16 arithmetic where the CPU has it (AVX512_BF16/AMX).

The decoder (prompt encoder + mask decoder for one box prompt) is converted the same way and
always runs in f32, and so is a second decoder for a box with points and/or a mask prompt (the
corrections of interactive refinement and the carry); a prompt without a box goes to the eager
model.
The decoders are converted from a copy whose two-way transformer keeps the image
channels-first (:attr:`~LiteMedSAMLib.modeling.transformer.TwoWayTransformer.channels_first`):
the same function without the image's large transposes, about 1.25x faster in OpenVINO.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

_announced = False  # whether this process has said that it converts (once, not per part)
BACKEND_VERSION = "3"  # bump when the conversion or the cache layout changes, so that cached IR is rebuilt
CACHE_ENV = "LITEMEDSAM_CACHE_DIR"
PRECISIONS = ("f32", "bf16")


def cache_dir() -> Path:
    """Folder for converted models: ``$LITEMEDSAM_CACHE_DIR`` or ``~/.cache/litemedsam``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "litemedsam")


def weights_digest(model: nn.Module) -> str:
    """SHA-256 of the model's weights file, or of its parameters when it has no file."""
    path = getattr(model, "weights_path", None)
    if path and Path(path).is_file():
        from ..registry import file_sha256

        return file_sha256(Path(path))
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _core():
    import openvino as ov

    return ov.Core()


def _compile(ov_model, precision: str, threads: int | None):
    config = {"INFERENCE_PRECISION_HINT": "f32" if precision == "f32" else "bf16",
              "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return _core().compile_model(ov_model, "CPU", config)


class _BoxDecoder(nn.Module):
    """Prompt encoder + mask decoder for one box: ``(1, 256, 64, 64)``, ``(1, 1, 4)`` -> logits, IoU."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.prompt_encoder, self.mask_decoder = model.prompt_encoder, model.mask_decoder
        self.model_forward = getattr(model, "forward_decoder", None)  # the model's own, if it has one

    def forward(self, embedding: torch.Tensor, boxes: torch.Tensor):
        if self.model_forward is not None:
            return self.model_forward(embedding, boxes)
        sparse, dense = self.prompt_encoder(points=None, boxes=boxes, masks=None)
        return self.mask_decoder(image_embeddings=embedding, image_pe=self.prompt_encoder.get_dense_pe(),
                                 sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                 multimask_output=False)


class _PromptDecoder(nn.Module):
    """Prompt encoder + mask decoder for a box with points and a mask prompt, all four mask
    outputs: ``embedding, boxes (1, 1, 4), coords (1, N, 2), labels (1, N) int, mask_input
    (1, 1, 256, 256), has_mask ()`` -> logits ``(1, 4, 256, 256)``, IoU ``(1, 4)``.

    Written without the boolean-index assignments of ``PromptEncoder._embed_points`` (which
    OpenVINO cannot convert); with a box there are no padding points, and adding ``0 * w``
    leaves a float unchanged, so the outputs equal the eager model's. ``has_mask`` 0 selects
    the no-mask embedding the same way (SAM's ONNX export does it so).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.prompt_encoder, self.mask_decoder = model.prompt_encoder, model.mask_decoder

    def forward(self, embedding, boxes, coords, labels, mask_input, has_mask):
        pe = self.prompt_encoder
        points = pe.pe_layer.forward_with_coords(coords + 0.5, pe.input_image_size)
        labels = labels[..., None]
        points = (points + (labels == 0).float() * pe.point_embeddings[0].weight
                  + (labels == 1).float() * pe.point_embeddings[1].weight)
        sparse = torch.cat([points, pe._embed_boxes(boxes)], dim=1)
        dense = (has_mask * pe.mask_downscaling(mask_input)
                 + (1 - has_mask) * pe.no_mask_embed.weight.reshape(1, -1, 1, 1))
        return self.mask_decoder.predict_masks(embedding, pe.get_dense_pe(), sparse, dense)


def supports_prompt_decoder(model: nn.Module) -> bool:
    """Models whose point prompts :class:`_PromptDecoder` reproduces (no box-derived points,
    no encoder skips)."""
    return not getattr(model, "box_points", 0) and not getattr(model.image_encoder, "skip_channels", None)


def _channels_first(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose two-way transformers keep the image channels-first: what the
    decoders are converted from (the eager model itself is left as it is)."""
    from ..modeling.transformer import TwoWayTransformer

    copied = copy.deepcopy(model)
    for module in copied.modules():
        if isinstance(module, TwoWayTransformer):
            module.channels_first = True
    return copied


def _convert(model: nn.Module, part: str):
    """Convert ``part`` (``encoder``, ``decoder``, ``prompt-decoder``) of ``model`` to an
    in-memory OpenVINO model (the ~25 s step the cache saves)."""
    import openvino as ov

    global _announced
    if not _announced:  # one line for the pause a first run makes, at the CLI's default verbosity
        log.info("converting the model for this CPU with OpenVINO, once: about 25 s "
                 "(later runs load it from the cache)")
        _announced = True
    with torch.no_grad(), warnings.catch_warnings():
        # tracing warns about every shape-dependent Python branch; they are expected and the
        # converted model is checked against the eager one by the tests
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        if part == "encoder":
            return ov.convert_model(model.image_encoder.eval(),
                                    example_input=torch.zeros(1, 3, model.image_size, model.image_size))
        model = _channels_first(model)
        if part in ("prompt-decoder", "click-decoder"):
            size, image = model.image_size // 4, model.image_size
            example = (torch.zeros(1, 256, size, size), torch.tensor([[[10.0, 10.0, 100.0, 100.0]]]),
                       torch.tensor([[[50.0, 50.0], [60.0, 70.0]]]), torch.tensor([[1, 0]], dtype=torch.int32),
                       torch.zeros(1, 1, image, image), torch.tensor(1.0))
            return ov.convert_model(
                _PromptDecoder(model).eval(), example_input=example,
                input=[([1, 256, size, size], ov.Type.f32), ([1, 1, 4], ov.Type.f32), ([1, -1, 2], ov.Type.f32),
                       ([1, -1], ov.Type.i32), ([1, 1, image, image], ov.Type.f32), ([], ov.Type.f32)])
        size = model.image_size // 4
        return ov.convert_model(_BoxDecoder(model).eval(),
                                example_input=(torch.zeros(1, 256, size, size),
                                               torch.tensor([[[10.0, 10.0, 100.0, 100.0]]])))


def _converted(model: nn.Module, part: str, folder: Path | None):
    """Load the cached IR of ``part`` (``encoder``/``decoder``/``prompt-decoder``) or convert
    and save it (see :func:`cached_model`).

    Returns ``(ov_model, path, converted)``; ``converted`` is True when this call paid the
    conversion.
    """
    import openvino as ov

    folder = Path(folder) if folder is not None else cache_dir()
    name = getattr(getattr(model, "spec", None), "name", "model")
    tag = f"{name}-{weights_digest(model)[:16]}-ov{ov.__version__.split('-')[0]}-b{BACKEND_VERSION}"
    path = folder / f"{tag}-{part}.xml"  # one float32 IR; the precision is a run-time hint
    ov_model, converted = cached_model(path, lambda: _convert(model, part), what=f"the {part}")
    return ov_model, path, converted


# ------------------------------------------------------------------------------ the cache files
# An entry is ``NAME.xml`` + ``NAME.bin`` + ``NAME.sha256`` (the digest of both, written last:
# an entry without a matching digest is not trusted). Files are written under temporary names
# and renamed, and one lock file per entry serialises conversions, so that a crash, a full disk
# or two processes converting at once never leave a half-written entry that is then used.


def _entry_digest(xml: Path) -> str:
    digest = hashlib.sha256()
    for part in (xml, xml.with_suffix(".bin")):
        with open(part, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _read_entry(xml: Path):
    """The cached OpenVINO model at ``xml``, or ``None`` when absent; a corrupt or truncated
    entry is logged and ``None`` (then it is rebuilt)."""
    check = xml.with_suffix(".sha256")
    if not (xml.is_file() and xml.with_suffix(".bin").is_file()):
        return None
    try:
        expected = check.read_text().strip() if check.is_file() else None
        if expected != _entry_digest(xml):
            raise ValueError("its checksum does not match" if expected else "it has no checksum file")
        return _core().read_model(str(xml))
    except Exception as exc:  # truncated, edited, foreign or unreadable: convert again
        log.warning("cached model %s is corrupt or incomplete (%s); rebuilding it", xml, exc)
        return None


def _write_entry(xml: Path, ov_model) -> None:
    """Save ``ov_model`` as the entry ``xml`` (temporary names, then renames; digest last)."""
    import openvino as ov

    tmp = xml.with_name(f"{xml.stem}.tmp{os.getpid()}.xml")
    try:
        ov.save_model(ov_model, str(tmp), compress_to_fp16=False)
        digest = _entry_digest(tmp)
        tmp_check = tmp.with_suffix(".sha256")
        tmp_check.write_text(digest + "\n")
        xml.with_suffix(".sha256").unlink(missing_ok=True)  # the entry is invalid while it changes
        tmp.with_suffix(".bin").replace(xml.with_suffix(".bin"))
        tmp.replace(xml)
        tmp_check.replace(xml.with_suffix(".sha256"))
    finally:
        for leftover in (tmp, tmp.with_suffix(".bin"), tmp.with_suffix(".sha256")):
            leftover.unlink(missing_ok=True)


class _EntryLock:
    """An exclusive lock on ``NAME.lock`` beside a cache entry (``fcntl.flock`` on POSIX,
    ``msvcrt.locking`` on Windows), released when the process ends, even by a crash."""

    def __init__(self, xml: Path) -> None:
        self.path = xml.with_suffix(".lock")
        self.file = None

    def __enter__(self) -> "_EntryLock":
        self.file = open(self.path, "a+b")
        try:
            import fcntl

            fcntl.flock(self.file.fileno(), fcntl.LOCK_EX)
        except ImportError:  # Windows
            import msvcrt

            while True:
                try:
                    msvcrt.locking(self.file.fileno(), msvcrt.LK_LOCK, 1)
                    break
                except OSError:  # LK_LOCK gives up after 10 s; keep waiting for the converter
                    continue
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()  # closing releases the lock


def cached_model(xml: Path, convert, what: str = "the model"):
    """The OpenVINO model cached at ``xml``, or ``convert()`` saved there.

    Returns ``(ov_model, converted)``. A corrupt or truncated entry is rebuilt (with a log
    line); when another process is converting the same entry, this one waits for it and
    loads its result; when the folder cannot be written (read-only, full), the model is
    converted and used without caching, with a warning.
    """
    xml = Path(xml)
    ov_model = _read_entry(xml)
    if ov_model is not None:
        return ov_model, False
    try:
        xml.parent.mkdir(parents=True, exist_ok=True)
        lock = _EntryLock(xml)
        lock.__enter__()
    except OSError as exc:
        log.warning("the model cache folder %s is not writable (%s); converting %s without caching "
                    "(every run converts again; set %s to a writable folder)", xml.parent, exc, what, CACHE_ENV)
        return convert(), True
    try:
        ov_model = _read_entry(xml)  # converted by another process while this one waited
        if ov_model is not None:
            return ov_model, False
        start = time.perf_counter()
        ov_model = convert()
        try:
            _write_entry(xml, ov_model)
        except OSError as exc:
            log.warning("could not save %s to the model cache %s (%s); using it without caching",
                        what, xml.parent, exc)
            return ov_model, True
        log.debug("converted %s to OpenVINO in %.1f s: %s", what, time.perf_counter() - start, xml)
        return ov_model, True
    finally:
        lock.__exit__()


class OpenVINOEncoder:
    """Callable ``(B, 3, 256, 256)`` float -> ``(B, 256, 64, 64)`` embeddings, for
    ``VolumePredictor(encoder=...)``."""

    def __init__(self, model: nn.Module, precision: str = "f32", threads: int | None = None,
                 folder: Path | None = None) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
        self.precision = precision
        ov_model, self.path, self.converted = _converted(model, "encoder", folder)
        self.request = _compile(ov_model, precision, threads).create_infer_request()
        self(torch.zeros(1, 3, model.image_size, model.image_size))  # the first run is slow: pay it here

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        out = [self.request.infer({0: images[i:i + 1].numpy()})[0].copy() for i in range(len(images))]
        return torch.from_numpy(np.concatenate(out))


def _prompt_infer(request, image_size: int, embedding: torch.Tensor, boxes: torch.Tensor, points,
                  mask_input: torch.Tensor | None, multimask_output: bool):
    """One box with points (none: a ``(1, 0, 2)`` array, which the converted model takes as it
    is, as the eager prompt encoder does) and/or a mask prompt through a converted
    :class:`_PromptDecoder`; the outputs ``LiteMedSAM.decode`` gives."""
    has_mask = mask_input is not None
    mask = mask_input if has_mask else torch.zeros(1, 1, image_size, image_size)
    coords, labels = points if points is not None else (torch.zeros(1, 0, 2), torch.zeros(1, 0, dtype=torch.int32))
    result = request.infer([
        embedding.numpy(), boxes.reshape(1, 1, 4).float().numpy(), coords.float().numpy(),
        labels.to(torch.int32).numpy(), mask.float().numpy(), np.array(float(has_mask), np.float32)])
    chosen = slice(1, None) if multimask_output else slice(0, 1)
    return torch.from_numpy(result[0][:, chosen].copy()), torch.from_numpy(result[1][:, chosen].copy())


class OpenVINODecoder:
    """Same signature as ``LiteMedSAM.decode``, in OpenVINO f32: one-box prompts, and a box
    with points and/or a mask prompt (the corrections of ``refinement``); other prompts (no
    box, models with box-derived points or skips) run in the eager model."""

    def __init__(self, model: nn.Module, threads: int | None = None, folder: Path | None = None) -> None:
        self.model = model
        ov_model, self.path, self.converted = _converted(model, "decoder", folder)
        self.request = _compile(ov_model, "f32", threads).create_infer_request()
        self.prompt_request = None
        if supports_prompt_decoder(model):
            prompt_model, _, _ = _converted(model, "prompt-decoder", folder)
            self.prompt_request = _compile(prompt_model, "f32", threads).create_infer_request()
        size = model.image_size // 4
        self(torch.zeros(1, 256, size, size), torch.tensor([[[10.0, 10.0, 100.0, 100.0]]]))  # warm-up

    def __call__(self, embedding: torch.Tensor, boxes: torch.Tensor | None = None, points=None,
                 mask_input: torch.Tensor | None = None, multimask_output: bool = False):
        one_box = boxes is not None and boxes.numel() == 4
        if one_box and points is None and mask_input is None and not multimask_output:
            result = self.request.infer({0: embedding.numpy(), 1: boxes.reshape(1, 1, 4).float().numpy()})
            return torch.from_numpy(result[0].copy()), torch.from_numpy(result[1].copy())
        if one_box and self.prompt_request is not None:
            return _prompt_infer(self.prompt_request, self.model.image_size, embedding, boxes, points, mask_input,
                                 multimask_output)
        return self.model.decode(embedding, boxes=boxes, points=points, mask_input=mask_input,
                                 multimask_output=multimask_output)


class OpenVINOClickDecoder:
    """A trained click decoder (:class:`~LiteMedSAMLib.click_decoder.ClickDecoder`) in OpenVINO
    f32, converted as the prompt decoder and cached under its own weights' SHA-256; same
    signature as ``LiteMedSAM.decode``. A box with points and/or a mask prompt (corrections,
    the carry) runs here, other prompts in the eager module."""

    def __init__(self, decoder: nn.Module, threads: int | None = None, folder: Path | None = None) -> None:
        self.decoder = decoder
        ov_model, self.path, self.converted = _converted(decoder, "click-decoder", folder)
        self.request = _compile(ov_model, "f32", threads).create_infer_request()
        size = decoder.image_size
        self(torch.zeros(1, 256, size // 4, size // 4), torch.tensor([[[10.0, 10.0, 100.0, 100.0]]]),
             (torch.tensor([[[50.0, 50.0]]]), torch.tensor([[1]], dtype=torch.int32)))  # warm-up

    def __call__(self, embedding: torch.Tensor, boxes: torch.Tensor | None = None, points=None,
                 mask_input: torch.Tensor | None = None, multimask_output: bool = False):
        if boxes is None or boxes.numel() != 4:
            return self.decoder.decode(embedding, boxes=boxes, points=points, mask_input=mask_input,
                                       multimask_output=multimask_output)
        return _prompt_infer(self.request, self.decoder.image_size, embedding, boxes, points, mask_input,
                             multimask_output)
