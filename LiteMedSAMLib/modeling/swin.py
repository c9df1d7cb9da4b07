"""Swin-T style encoder of Swin-LiteMedSAM, with skip features for the decoder.

After Gao, Lyu and Staring, "Swin-LiteMedSAM: A Lightweight Box-Based Segment Anything
Model for Large-Scale Medical Image Datasets" (CVPR 2024 "MedSAM on Laptop", team lkeb,
RuochenGao/Swin_LiteMedSAM) and Swin Transformer (Liu et al., ICCV 2021, shifted windows).
Our own code. The encoder: a 1x1 Conv-BN patch embedding at full resolution (as TinyViT),
four stages that each start with a patch merging (down-scaling factor 2, 2, 1, 1: 256 -> 128
-> 64 -> 64 -> 64) and alternate regular and shifted window-attention blocks (relative
position bias, ``head_dim`` per head), and SAM's neck on the last stage.

Skip connections: the paper feeds stage 1 (128x128) and the concatenated stages 2-4 (64x64)
into the mask decoder's two up-sampling steps. Because the predictor caches one tensor per
slice, this encoder appends the skips to the embedding as extra channels (see
:class:`SkipFeatures` and :class:`~.mask_decoder.SkipUpscaling`): the output is
``(B, 256 + skip64 + 4 * skip128, 64, 64)``; the decoder splits it again. The paper's
800->256 fusion of stages 2-4 runs here, once per image, instead of once per prompt; and the
skips are projected to ``skip_channels`` (the paper: 256 and 128; our default 64 and 32), so
that a cached slice takes 7 MB instead of 16 MB.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .common import LayerNorm2d
from .tiny_vit import PatchEmbed


def _window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c).transpose(2, 3)
    return x.reshape(-1, ws * ws, c)


def _window_merge(x: torch.Tensor, ws: int, b: int, h: int, w: int) -> torch.Tensor:
    c = x.shape[-1]
    x = x.view(b, h // ws, w // ws, ws, ws, c).transpose(2, 3)
    return x.reshape(b, h, w, c)


class WindowAttention(nn.Module):
    """Multi-head attention inside ``ws x ws`` windows with a learned relative position bias."""

    def __init__(self, dim: int, heads: int, head_dim: int, window_size: int) -> None:
        super().__init__()
        self.heads, self.head_dim, self.ws = heads, head_dim, window_size
        inner = heads * head_dim
        self.qkv = nn.Linear(dim, 3 * inner)
        self.proj = nn.Linear(inner, dim)
        self.relative_bias = nn.Parameter(torch.zeros(heads, (2 * window_size - 1) ** 2))
        nn.init.trunc_normal_(self.relative_bias, std=0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size),
                                            indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]) + (window_size - 1)
        self.register_buffer("bias_index", rel[0] * (2 * window_size - 1) + rel[1], persistent=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        bw, n, _ = x.shape
        q, k, v = self.qkv(x).view(bw, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1)) * self.head_dim ** -0.5 + self.relative_bias[:, self.bias_index]
        if mask is not None:  # (nW, n, n), windows of each image in order
            attn = attn.view(-1, mask.shape[0], self.heads, n, n) + mask[None, :, None]
            attn = attn.view(bw, self.heads, n, n)
        x = (attn.softmax(-1) @ v).transpose(1, 2).reshape(bw, n, -1)
        return self.proj(x)


class SwinBlock(nn.Module):
    """Pre-norm (shifted) window attention and MLP, each with a residual; ``(B, H, W, C)``."""

    def __init__(self, dim: int, heads: int, head_dim: int, window_size: int, shifted: bool,
                 resolution: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if resolution % window_size:
            raise ValueError(f"window size {window_size} does not divide the {resolution} grid")
        self.ws = window_size
        self.shift = window_size // 2 if shifted and resolution > window_size else 0
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, head_dim, window_size)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(),
                                 nn.Linear(int(dim * mlp_ratio), dim))
        mask = self._shift_mask(resolution) if self.shift else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def _shift_mask(self, r: int) -> torch.Tensor:
        """-100 between tokens that the cyclic shift brought from different image regions."""
        region = torch.zeros(1, r, r, 1)
        cuts = (slice(0, -self.ws), slice(-self.ws, -self.shift), slice(-self.shift, None))
        for i, (hs, wsl) in enumerate((a, b) for a in cuts for b in cuts):
            region[:, hs, wsl] = i
        ids = _window_partition(region, self.ws).squeeze(-1)
        return (ids[:, None, :] != ids[:, :, None]).float() * -100.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        y = self.norm1(x)
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), (1, 2))
        y = _window_merge(self.attn(_window_partition(y, self.ws), self.attn_mask), self.ws, b, h, w)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), (1, 2))
        x = x + y
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """Space-to-depth by ``factor`` then a linear map to ``out_dim``; ``(B, H, W, C)`` tensors."""

    def __init__(self, in_dim: int, out_dim: int, factor: int) -> None:
        super().__init__()
        self.factor = factor
        self.linear = nn.Linear(in_dim * factor * factor, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.factor > 1:
            x = F.pixel_unshuffle(x.permute(0, 3, 1, 2), self.factor).permute(0, 2, 3, 1)
        return self.linear(x)


class SwinStage(nn.Module):
    def __init__(self, in_dim: int, dim: int, depth: int, factor: int, heads: int, head_dim: int,
                 window_size: int, resolution: int) -> None:
        super().__init__()
        self.downsample = PatchMerging(in_dim, dim, factor)
        self.blocks = nn.ModuleList([
            SwinBlock(dim, heads, head_dim, window_size, shifted=i % 2 == 1, resolution=resolution)
            for i in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        for block in self.blocks:
            x = block(x)
        return x


class SkipFeatures(nn.Module):
    """Project stage 1 and stages 2-4 to the decoder's skip channels, packed at 64x64."""

    def __init__(self, stage1_dim: int, fused_dims: int, skip_channels: Sequence[int]) -> None:
        super().__init__()
        c128, c64 = skip_channels
        self.fuse64 = nn.Sequential(nn.Conv2d(fused_dims, c64, 1, bias=False), LayerNorm2d(c64),
                                    nn.Conv2d(c64, c64, 3, padding=1, bias=False), LayerNorm2d(c64))
        self.proj128 = nn.Sequential(nn.Conv2d(stage1_dim, c128, 1, bias=False), LayerNorm2d(c128))

    def forward(self, f128: torch.Tensor, f64: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.fuse64(f64), F.pixel_unshuffle(self.proj128(f128), 2)], dim=1)


class SwinEncoder(nn.Module):
    """Swin-LiteMedSAM encoder: ``(B, 3, 256, 256)`` -> ``(B, 256 + c64 + 4*c128, 64, 64)``.

    Args:
        embed_dims: patch embedding width, then the width of stages 1-4 (paper: 64, 128, 160, 320, 320).
        depths: blocks per stage (paper: 2, 2, 6, 2).
        num_heads: heads per stage (paper: 2, 4, 5, 10), ``head_dim`` channels each (32).
        factors: patch-merging factor per stage (2, 2, 1, 1).
        window_size: attention window (8).
        skip_channels: ``(c128, c64)`` channels of the two skip features.
    """

    def __init__(self, img_size: int = 256, embed_dims: Sequence[int] = (64, 128, 160, 320, 320),
                 depths: Sequence[int] = (2, 2, 6, 2), num_heads: Sequence[int] = (2, 4, 5, 10),
                 head_dim: int = 32, factors: Sequence[int] = (2, 2, 1, 1), window_size: int = 8,
                 skip_channels: Sequence[int] = (32, 64), out_chans: int = 256) -> None:
        super().__init__()
        if not len(embed_dims) - 1 == len(depths) == len(num_heads) == len(factors) == 4:
            raise ValueError("Swin encoder needs 5 embed_dims and 4 depths, num_heads and factors")
        self.img_size = img_size
        self.out_chans = out_chans
        self.skip_channels = tuple(skip_channels)
        self.patch_embed = PatchEmbed(3, embed_dims[0], img_size)
        self.stages = nn.ModuleList()
        resolution = img_size
        for i in range(4):
            resolution //= factors[i]
            self.stages.append(SwinStage(embed_dims[i], embed_dims[i + 1], depths[i], factors[i],
                                         num_heads[i], head_dim, window_size, resolution))
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, kernel_size=1, bias=False), LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False), LayerNorm2d(out_chans))
        self.skips = SkipFeatures(embed_dims[1], sum(embed_dims[2:]), skip_channels)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).permute(0, 2, 3, 1)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x.permute(0, 3, 1, 2))
        embedding = self.neck(feats[-1])
        return torch.cat([embedding, self.skips(feats[0], torch.cat(feats[1:], dim=1))], dim=1)
