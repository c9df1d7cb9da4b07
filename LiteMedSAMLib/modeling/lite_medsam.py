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

from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .tiny_vit import TinyViT
from .transformer import TwoWayTransformer

# Encoder builders by architecture name; each takes its manifest ``encoder`` config.
ENCODERS: dict[str, Callable[..., nn.Module]] = {"tiny_vit": TinyViT}


class LiteMedSAM(nn.Module):
    """Box-prompted SAM with a small encoder at ``image_size`` (256) input resolution."""

    def __init__(self, image_encoder: nn.Module, prompt_encoder: PromptEncoder,
                 mask_decoder: MaskDecoder) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.mask_decoder = mask_decoder
        self.prompt_encoder = prompt_encoder

    @property
    def image_size(self) -> int:
        return self.prompt_encoder.input_image_size[0]

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` float in [0, 1] -> image embeddings ``(B, 256, S/4, S/4)``."""
        return self.image_encoder(images)

    @torch.no_grad()
    def decode(self, embedding: torch.Tensor, boxes: torch.Tensor | None = None,
               points: tuple[torch.Tensor, torch.Tensor] | None = None,
               mask_input: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict one mask per prompt on one image embedding.

        Args:
            embedding: ``(1, 256, h, w)`` from :meth:`encode`.
            boxes: ``(B, 4)`` boxes (x0, y0, x1, y1) in model input pixels.
            points: coordinates ``(B, N, 2)`` in model input pixels and labels ``(B, N)``
                (1 foreground, 0 background).
            mask_input: ``(B, 1, 4h, 4w)`` low-resolution logits of an earlier prediction.
        Returns:
            low-resolution mask logits ``(B, 1, S, S)`` and predicted IoU ``(B, 1)``.
        """
        if boxes is not None and boxes.ndim == 2:
            boxes = boxes[:, None, :]
        sparse, dense = self.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        return self.mask_decoder(image_embeddings=embedding,
                                 image_pe=self.prompt_encoder.get_dense_pe(),
                                 sparse_prompt_embeddings=sparse,
                                 dense_prompt_embeddings=dense,
                                 multimask_output=False)


def build_lite_medsam(architecture: Mapping[str, Any]) -> LiteMedSAM:
    """Build an untrained network from a manifest ``architecture`` entry.

    The entry holds ``image_size``, ``encoder`` (with ``name`` and the builder's keyword
    arguments) and ``decoder`` (``transformer_depth``, ``mlp_dim``, ``num_heads``,
    ``iou_head_depth``, ``iou_head_hidden_dim``).
    """
    image_size = int(architecture.get("image_size", 256))
    encoder_cfg = dict(architecture["encoder"])
    name = encoder_cfg.pop("name")
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder architecture {name!r}; known: {sorted(ENCODERS)}")
    image_encoder = ENCODERS[name](img_size=image_size, **encoder_cfg)
    dec = architecture.get("decoder", {})
    embed_dim = 256
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
    )
    return LiteMedSAM(image_encoder, prompt_encoder, mask_decoder)
