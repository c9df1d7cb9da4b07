"""A prompt encoder + mask decoder trained for clicks and scribbles (issue #13).

LiteMedSAM's decoder was distilled from MedSAM, which was trained with boxes only, so it
barely follows points. A model's manifest entry may name a *click decoder*: the same
prompt encoder and mask decoder architecture, fine-tuned (``Training/click_decoder.py``) with
the image encoder frozen on a box plus simulated clicks and scribbles, with the previous
low-resolution logits fed back as the mask prompt (SAM's interactive training)::

    "click_decoder": {"filename": "litemedsam_click_decoder.pth", "sha256": "...",
                      "size": 8177708, "card": "litemedsam_click_decoder.md",
                      "correction": "trained"}

The file lies next to the manifest in ``weights/`` (shipped with the package and the Slicer
extension). The box pass keeps the model's own decoder on its start slice; the default
pipeline propagates it through the click decoder where the slices are at most 1.5 mm apart
(pipeline lever ``carry``, :mod:`~LiteMedSAMLib.pipeline`). Corrections use it as
``RefinementSession(correction="trained")`` (its output replaces the slice) or
``"trained-edit"`` (its output is the edit heuristic's first candidate); the entry's
``correction`` names the default, chosen by measurement (see the model card).
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn

from .errors import LiteMedSAMError
from .registry import (  # the manifest's side (torch-free)
    click_decoder_correction,
    click_decoder_entry,
    click_decoder_path,
)

log = logging.getLogger(__name__)

def has_click_decoder(model) -> bool:
    """Whether ``model`` (a loaded model) has an installed click decoder."""
    return getattr(model, "spec", None) is not None and click_decoder_path(model) is not None


class ClickDecoder(nn.Module):
    """The trained prompt encoder and mask decoder; :meth:`decode` has ``LiteMedSAM.decode``'s
    signature (the single-mask output). ``image_size``, ``spec`` and ``weights_path`` let the
    OpenVINO backend convert and cache it like the model's own decoders."""

    def __init__(self, prompt_encoder: nn.Module, mask_decoder: nn.Module) -> None:
        super().__init__()
        self.prompt_encoder, self.mask_decoder = prompt_encoder, mask_decoder
        self.image_encoder = nn.Identity()  # no encoder: supports_prompt_decoder() looks here
        self.weights_path: str | None = None
        self.spec = None

    @property
    def image_size(self) -> int:
        return self.prompt_encoder.input_image_size[0]

    @torch.no_grad()
    def decode(self, embedding: torch.Tensor, boxes: torch.Tensor | None = None, points=None,
               mask_input: torch.Tensor | None = None, multimask_output: bool = False):
        if boxes is not None and boxes.ndim == 2:
            boxes = boxes[:, None, :]
        sparse, dense = self.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        return self.mask_decoder(image_embeddings=embedding, image_pe=self.prompt_encoder.get_dense_pe(),
                                 sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                 multimask_output=multimask_output)

    def forward(self, *args, **kwargs):
        return self.decode(*args, **kwargs)


def load_click_decoder(model) -> ClickDecoder:
    """The click decoder of a loaded ``model`` (verified against the manifest's SHA-256).

    Raises a :class:`LiteMedSAMError` naming the problem when the model has none, the file is
    missing, corrupt (checksum) or does not fit the model's decoder.
    """
    from .registry import file_sha256, read_state_dict

    entry = click_decoder_entry(model)
    if entry is None:
        name = getattr(getattr(model, "spec", None), "name", "this model")
        raise LiteMedSAMError(f"model {name!r} has no click decoder in its manifest")
    path = click_decoder_path(model)
    if path is None:
        raise LiteMedSAMError(f"the click decoder {entry['filename']} of model {model.spec.name!r} is not "
                              "installed (reinstall the package: it ships in LiteMedSAMLib/weights/)")
    expected = entry.get("sha256")
    if expected and file_sha256(path) != expected:
        raise LiteMedSAMError(f"the click decoder {path} is corrupt or not the registered release "
                              f"(SHA-256 {file_sha256(path)[:12]}..., expected {expected[:12]}...)")
    state = read_state_dict(path)
    decoder = ClickDecoder(copy.deepcopy(model.prompt_encoder), copy.deepcopy(model.mask_decoder))
    own = decoder.state_dict()
    missing = sorted(set(own) - set(state) - {k for k in own if k.startswith("image_encoder.")})
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise LiteMedSAMError(f"{path} does not fit the decoder of model {model.spec.name!r}: "
                              f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    decoder.load_state_dict(state, strict=False)
    decoder.weights_path, decoder.spec = str(path), model.spec
    return decoder.eval()


def click_decoder_for(predictor):
    """The click decoder callable for ``predictor`` (``LiteMedSAM.decode``'s signature), made
    once per predictor and kept on it: OpenVINO f32 when the predictor runs an OpenVINO mode
    (as its other decoders; converted once and cached on disk), else eager PyTorch."""
    cached = getattr(predictor, "_click_decoder", None)
    if cached is not None:
        return cached
    decoder = load_click_decoder(predictor.model)
    call = decoder.decode
    if getattr(predictor, "mode", "torch") != "torch":
        try:
            from .backends.openvino_backend import OpenVINOClickDecoder

            call = OpenVINOClickDecoder(decoder)
        except Exception as exc:  # never worse than eager
            log.warning("OpenVINO click decoder unavailable (%s: %s); using eager PyTorch",
                        type(exc).__name__, exc)
    predictor._click_decoder = call
    return call


def default_correction(predictor) -> str:
    """The correction a session uses by default for the predictor's model
    (:func:`~LiteMedSAMLib.registry.click_decoder_correction`)."""
    return click_decoder_correction(getattr(predictor, "model", None))

