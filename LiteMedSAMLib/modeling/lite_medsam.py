"""The LiteMedSAM network: an image encoder, SAM's prompt encoder and SAM's mask decoder.

Attribute names (``image_encoder``, ``prompt_encoder``, ``mask_decoder``) match the
official ``MedSAM_Lite`` class so that the official checkpoint loads with ``strict=True``.
Which encoder is used, and the decoder's sizes, come from the model manifest
(:mod:`LiteMedSAMLib.registry`), so that the distilled students share this class.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from .efficientvit import EfficientViT
from .input_channels import INPUT_TRANSFORMS
from .mask_decoder import MaskDecoder, SkipUpscaling
from .prompt_encoder import PromptEncoder
from .repvit import RepViT
from .swin import SwinEncoder
from .tiny_vit import TinyViT
from .transformer import TwoWayTransformer

# Encoder builders by architecture name; each takes its manifest ``encoder`` config.
ENCODERS: dict[str, Callable[..., nn.Module]] = {
    "tiny_vit": TinyViT,          # LiteMedSAM, SwiftMedSAM
    "repvit": RepViT,             # Rep-MedSAM (M1.0), RepViT-M0.6 student
    "swin": SwinEncoder,          # Swin-LiteMedSAM (adds skip features to the embedding)
    "efficientvit": EfficientViT, # EfficientViT-SAM-L0
}
EMBED_DIM = 256  # channels of the image embedding that the prompt encoder and decoder use


class LiteMedSAM(nn.Module):
    """Box-prompted SAM with a small encoder at ``image_size`` (256) input resolution."""

    def __init__(self, image_encoder: nn.Module, prompt_encoder: PromptEncoder,
                 mask_decoder: MaskDecoder, input_transform: nn.Module | None = None,
                 box_points: int = 0) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.mask_decoder = mask_decoder
        self.prompt_encoder = prompt_encoder
        # What the 3 input channels hold (no parameters; identity for the official input).
        self.input_transform = input_transform if input_transform is not None else nn.Identity()
        # Swin-LiteMedSAM: a box prompt also gives 4 positive points inside it.
        self.box_points = box_points

    @property
    def image_size(self) -> int:
        return self.prompt_encoder.input_image_size[0]

    def forward_encoder(self, images: torch.Tensor) -> torch.Tensor:
        """:meth:`encode` with gradients (training)."""
        return self.image_encoder(self.input_transform(images))

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` float in [0, 1] -> image embeddings ``(B, 256, S/4, S/4)``.

        Encoders with skip connections (Swin-LiteMedSAM) append their skip features as more
        channels: ``(B, 256 + k, S/4, S/4)``; :meth:`decode` splits them off again.
        """
        return self.forward_encoder(images)

    def forward_decoder(self, embedding: torch.Tensor, boxes: torch.Tensor | None = None,
                        points: tuple[torch.Tensor, torch.Tensor] | None = None,
                        mask_input: torch.Tensor | None = None,
                        multimask_output: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`decode` with gradients (training)."""
        if boxes is not None and boxes.ndim == 2:
            boxes = boxes[:, None, :]
        if self.box_points and boxes is not None:
            points = _with_box_points(boxes, points, self.box_points)
        skips = embedding[:, EMBED_DIM:] if embedding.shape[1] > EMBED_DIM else None
        embedding = embedding[:, :EMBED_DIM] if skips is not None else embedding
        sparse, dense = self.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        kwargs = {} if skips is None else {"skips": skips}
        return self.mask_decoder(image_embeddings=embedding,
                                 image_pe=self.prompt_encoder.get_dense_pe(),
                                 sparse_prompt_embeddings=sparse,
                                 dense_prompt_embeddings=dense,
                                 multimask_output=multimask_output, **kwargs)

    @torch.no_grad()
    def decode(self, embedding: torch.Tensor, boxes: torch.Tensor | None = None,
               points: tuple[torch.Tensor, torch.Tensor] | None = None,
               mask_input: torch.Tensor | None = None,
               multimask_output: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict one mask per prompt on one image embedding.

        Args:
            embedding: ``(1, 256, h, w)`` from :meth:`encode`.
            boxes: ``(B, 4)`` boxes (x0, y0, x1, y1) in model input pixels.
            points: coordinates ``(B, N, 2)`` in model input pixels and labels ``(B, N)``
                (1 foreground, 0 background).
            mask_input: ``(B, 1, 4h, 4w)`` low-resolution logits of an earlier prediction.
            multimask_output: return SAM's three multimask outputs instead of the single
                output that LiteMedSAM was trained on (box prompts); the first of them
                follows point prompts far better (see ``refinement``).
        Returns:
            low-resolution mask logits ``(B, M, S, S)`` and predicted IoU ``(B, M)``, ``M`` 1
            or 3.
        """
        return self.forward_decoder(embedding, boxes, points, mask_input, multimask_output)


def box_points(boxes: torch.Tensor, n: int = 4) -> torch.Tensor:
    """``n`` (4) points derived from ``(B, 1, 4)`` boxes: the centres of the box's quadrants.

    Swin-LiteMedSAM prompts with a box plus 4 points inside it (the paper samples them at
    random inside the box's central part); a fixed rule keeps inference deterministic and
    training uses the same rule on its jittered boxes. Returns ``(B, n, 2)``.
    """
    x0, y0, x1, y1 = boxes[:, 0].unbind(-1)
    fx = torch.tensor([0.25, 0.25, 0.75, 0.75], dtype=boxes.dtype, device=boxes.device)[:n]
    fy = torch.tensor([0.25, 0.75, 0.25, 0.75], dtype=boxes.dtype, device=boxes.device)[:n]
    xs = x0[:, None] + fx * (x1 - x0)[:, None]
    ys = y0[:, None] + fy * (y1 - y0)[:, None]
    return torch.stack([xs, ys], dim=-1)


def _with_box_points(boxes: torch.Tensor, points: tuple[torch.Tensor, torch.Tensor] | None,
                     n: int) -> tuple[torch.Tensor, torch.Tensor]:
    coords = box_points(boxes, n)
    labels = torch.ones(coords.shape[:2], dtype=torch.int, device=coords.device)
    if points is not None:
        coords = torch.cat([coords, points[0].to(coords.dtype)], dim=1)
        labels = torch.cat([labels, points[1].to(labels.dtype)], dim=1)
    return coords, labels


def build_lite_medsam(architecture: Mapping[str, Any]) -> LiteMedSAM:
    """Build an untrained network from a manifest ``architecture`` entry.

    The entry holds ``image_size``, ``encoder`` (with ``name`` and the builder's keyword
    arguments; ``reparameterized: true`` builds the fused inference form of an encoder
    that has one, e.g. RepViT) and ``decoder`` (``transformer_depth``, ``mlp_dim``,
    ``num_heads``, ``iou_head_depth``, ``iou_head_hidden_dim``). Optional:
    ``input_channels`` (see :data:`~.input_channels.INPUT_TRANSFORMS`, default ``"repeat"``),
    ``prompts.box_points`` (points derived from each box, default 0) and ``quantization``
    (``"dynamic_int8"``: ``nn.Linear`` layers as int8 with dynamic activation scales).
    """
    image_size = int(architecture.get("image_size", 256))
    encoder_cfg = dict(architecture["encoder"])
    name = encoder_cfg.pop("name")
    reparameterized = bool(encoder_cfg.pop("reparameterized", False))
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder architecture {name!r}; known: {sorted(ENCODERS)}")
    image_encoder = ENCODERS[name](img_size=image_size, **encoder_cfg)
    if reparameterized:
        if not hasattr(image_encoder, "fuse"):
            raise ValueError(f"encoder {name!r} has no re-parameterized form")
        image_encoder = image_encoder.eval().fuse()
    input_channels = architecture.get("input_channels", "repeat")
    if input_channels not in INPUT_TRANSFORMS:
        raise ValueError(f"unknown input_channels {input_channels!r}; known: {sorted(INPUT_TRANSFORMS)}")
    dec = architecture.get("decoder", {})
    embed_dim = EMBED_DIM
    skip_channels = getattr(image_encoder, "skip_channels", None)
    prompt_encoder = PromptEncoder(embed_dim=embed_dim,
                                   image_embedding_size=(image_size // 4, image_size // 4),
                                   input_image_size=(image_size, image_size), mask_in_chans=16)
    mask_decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=int(dec.get("transformer_depth", 2)),
                                      embedding_dim=embed_dim,
                                      mlp_dim=int(dec.get("mlp_dim", 2048)),
                                      num_heads=int(dec.get("num_heads", 8))),
        transformer_dim=embed_dim,
        iou_head_depth=int(dec.get("iou_head_depth", 3)),
        iou_head_hidden_dim=int(dec.get("iou_head_hidden_dim", 256)),
        output_upscaling=SkipUpscaling(embed_dim, skip_channels) if skip_channels else None,
    )
    model = LiteMedSAM(image_encoder, prompt_encoder, mask_decoder,
                       input_transform=INPUT_TRANSFORMS[input_channels](),
                       box_points=int(architecture.get("prompts", {}).get("box_points", 0)))
    quantization = architecture.get("quantization")
    if quantization:
        model = quantize(model, quantization)
    return model


def quantize(model: LiteMedSAM, scheme: str) -> LiteMedSAM:
    """Return ``model`` quantized with ``scheme``; ``"dynamic_int8"``: PyTorch dynamic
    quantization of every ``nn.Linear`` (int8 weights, activations quantized on the fly)."""
    if scheme != "dynamic_int8":
        raise ValueError(f"unknown quantization {scheme!r}; known: ['dynamic_int8']")
    import warnings

    with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model.eval(), {nn.Linear}, dtype=torch.qint8)
