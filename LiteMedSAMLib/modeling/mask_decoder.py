"""SAM mask decoder: image embedding + prompt embeddings -> mask logits and IoU scores.

Re-implemented after Segment Anything (Meta, Apache-2.0); names match its checkpoints.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import MLP, LayerNorm2d


class MaskDecoder(nn.Module):
    """Predicts ``(B, M, 4*h, 4*w)`` mask logits and ``(B, M)`` IoU estimates.

    ``M`` is 1 (single-mask output, as LiteMedSAM is used) or ``num_multimask_outputs``.
    """

    def __init__(self, *, transformer_dim: int, transformer: nn.Module,
                 num_multimask_outputs: int = 3, iou_head_depth: int = 3,
                 iou_head_hidden_dim: int = 256, output_upscaling: nn.Module | None = None) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        # SAM's two transposed convolutions, or a module taking (src, skips) (Swin-LiteMedSAM)
        self.output_upscaling = output_upscaling if output_upscaling is not None else nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList([
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3)
            for _ in range(self.num_mask_tokens)])
        self.iou_prediction_head = MLP(transformer_dim, iou_head_hidden_dim, self.num_mask_tokens,
                                       iou_head_depth)

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                sparse_prompt_embeddings: torch.Tensor, dense_prompt_embeddings: torch.Tensor,
                multimask_output: bool,
                skips: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        masks, iou_pred = self.predict_masks(image_embeddings, image_pe,
                                             sparse_prompt_embeddings, dense_prompt_embeddings, skips)
        selected = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, selected], iou_pred[:, selected]

    def predict_masks(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                      sparse_prompt_embeddings: torch.Tensor,
                      dense_prompt_embeddings: torch.Tensor,
                      skips: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        output_tokens = output_tokens.unsqueeze(0).expand(sparse_prompt_embeddings.size(0), -1, -1)
        tokens = torch.cat((output_tokens, sparse_prompt_embeddings), dim=1)
        if image_embeddings.shape[0] != tokens.shape[0]:
            src = torch.repeat_interleave(image_embeddings, tokens.shape[0], dim=0)
        else:
            src = image_embeddings
        src = src + dense_prompt_embeddings
        pos_src = torch.repeat_interleave(image_pe, tokens.shape[0], dim=0)
        b, c, h, w = src.shape
        hs, src = self.transformer(src, pos_src, tokens)
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1:(1 + self.num_mask_tokens), :]
        if not getattr(self.transformer, "channels_first", False):  # channels-first: (b, c, h, w) already
            src = src.transpose(1, 2).view(b, c, h, w)
        if skips is None:
            upscaled = self.output_upscaling(src)
        else:
            upscaled = self.output_upscaling(src, skips.expand(b, -1, -1, -1))
        hyper_in = torch.stack([mlp(mask_tokens_out[:, i, :])
                                for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1)
        b, c, h, w = upscaled.shape
        masks = (hyper_in @ upscaled.view(b, c, h * w)).view(b, -1, h, w)
        return masks, self.iou_prediction_head(iou_token_out)


class SkipUpscaling(nn.Module):
    """Swin-LiteMedSAM's up-sampling with skip connections (Gao et al., CVPR 2024 challenge).

    ``skips`` holds the encoder's 64x64 skip (``c64`` channels) followed by its 128x128 skip
    packed by pixel-unshuffle (``4 * c128`` channels), see :class:`~.swin.SkipFeatures`. Each
    up-sampling step concatenates a skip, mixes it with a 1x1 conv + LayerNorm + GELU and
    doubles the resolution with a transposed convolution: 64 -> 128 -> 256.
    """

    def __init__(self, transformer_dim: int, skip_channels: tuple[int, int]) -> None:
        super().__init__()
        c128, c64 = skip_channels
        self.c64 = c64
        d = transformer_dim
        self.up1 = nn.Sequential(nn.Conv2d(d + c64, d, 1), LayerNorm2d(d), nn.GELU(),
                                 nn.ConvTranspose2d(d, d // 2, kernel_size=2, stride=2), nn.GELU())
        self.up2 = nn.Sequential(nn.Conv2d(d // 2 + c128, d // 4, 1), LayerNorm2d(d // 4), nn.GELU(),
                                 nn.ConvTranspose2d(d // 4, d // 8, kernel_size=2, stride=2), nn.GELU())

    def forward(self, src: torch.Tensor, skips: torch.Tensor) -> torch.Tensor:
        skip64, skip128 = skips[:, :self.c64], F.pixel_shuffle(skips[:, self.c64:], 2)
        x = self.up1(torch.cat([src, skip64], dim=1))
        return self.up2(torch.cat([x, skip128], dim=1))
