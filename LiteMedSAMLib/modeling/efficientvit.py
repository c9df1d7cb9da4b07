"""EfficientViT-L image encoder with EfficientViT-SAM's neck (EfficientViT-SAM-L0).

After Cai et al., "EfficientViT: Lightweight Multi-Scale Attention for High-Resolution Dense
Prediction" (ICCV 2023) and Zhang et al., "EfficientViT-SAM" (2024), mit-han-lab/efficientvit
(Apache-2.0); our own code. The L-series backbone has a stem of residual conv blocks, two
fused-MBConv stages, one MBConv stage and one stage of EfficientViT modules (ReLU linear
attention with multi-scale 5x5 token aggregation, then an MBConv). The SAM neck projects the
last three stages to ``head_width`` channels, resizes them to the embedding grid, adds them,
runs ``head_depth`` fused-MBConv blocks and maps to SAM's 256 channels (+ LayerNorm).

EfficientViT-SAM takes 1024x1024 inputs (backbone strides 2..32). Here the input is 256x256,
so ``strides`` (stem, stages 1-4) defaults to ``(1, 2, 2, 2, 2)``: stage 2 is then at 64x64,
the grid SAM's neck sees at 1024 input, and the embedding is ``(B, 256, 64, 64)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .common import LayerNorm2d


class ConvNormAct(nn.Sequential):
    """Conv (bias only without norm) -> optional BatchNorm -> optional GELU."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1,
                 norm: bool = True, act: bool = True, bias: bool = False) -> None:
        super().__init__()
        self.add_module("conv", nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=bias or not norm))
        if norm:
            self.add_module("norm", nn.BatchNorm2d(cout))
        if act:
            self.add_module("act", nn.GELU())


class Residual(nn.Module):
    def __init__(self, main: nn.Module) -> None:
        super().__init__()
        self.main = main

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.main(x)


def res_block(cin: int, cout: int, stride: int = 1, expand: float = 1) -> nn.Sequential:
    mid = round(cin * expand)
    return nn.Sequential(ConvNormAct(cin, mid, 3, stride), ConvNormAct(mid, cout, 3, act=False))


def fused_mbconv(cin: int, cout: int, stride: int = 1, expand: float = 4) -> nn.Sequential:
    mid = round(cin * expand)
    return nn.Sequential(ConvNormAct(cin, mid, 3, stride), ConvNormAct(mid, cout, 1, act=False))


def mbconv(cin: int, cout: int, stride: int = 1, expand: float = 4, fewer_norm: bool = False) -> nn.Sequential:
    mid = round(cin * expand)
    n = not fewer_norm  # "fewer norm": only the projection keeps its BatchNorm
    return nn.Sequential(ConvNormAct(cin, mid, 1, norm=n, bias=fewer_norm),
                         ConvNormAct(mid, mid, 3, stride, groups=mid, norm=n, bias=fewer_norm),
                         ConvNormAct(mid, cout, 1, act=False))


class LiteMLA(nn.Module):
    """Lightweight multi-scale ReLU linear attention (EfficientViT's context module)."""

    def __init__(self, channels: int, head_dim: int = 32, scales: Sequence[int] = (5,), eps: float = 1e-15) -> None:
        super().__init__()
        heads = channels // head_dim
        total = heads * head_dim
        self.head_dim, self.eps = head_dim, eps
        self.qkv = nn.Conv2d(channels, 3 * total, 1, bias=False)
        self.aggreg = nn.ModuleList([
            nn.Sequential(nn.Conv2d(3 * total, 3 * total, s, padding=s // 2, groups=3 * total, bias=False),
                          nn.Conv2d(3 * total, 3 * total, 1, groups=3 * heads, bias=False))
            for s in scales])
        self.proj = ConvNormAct(total * (1 + len(scales)), channels, 1, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        qkv = self.qkv(x)
        qkv = torch.cat([qkv] + [op(qkv) for op in self.aggreg], dim=1)
        qkv = qkv.view(b, -1, 3 * self.head_dim, h * w).transpose(-1, -2)  # (B, heads', N, 3d)
        q, k, v = qkv.float().chunk(3, dim=-1)
        q, k = F.relu(q), F.relu(k)
        v = F.pad(v, (0, 1), value=1.0)  # the extra ones column gives the normaliser
        out = q @ (k.transpose(-1, -2) @ v)
        out = out[..., :-1] / (out[..., -1:] + self.eps)
        out = out.to(x.dtype).transpose(-1, -2).reshape(b, -1, h, w)
        return self.proj(out)


class EfficientViTBlock(nn.Module):
    def __init__(self, channels: int, head_dim: int, expand: float) -> None:
        super().__init__()
        self.context_module = Residual(LiteMLA(channels, head_dim))
        self.local_module = Residual(mbconv(channels, channels, 1, expand, fewer_norm=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.local_module(self.context_module(x))


class EfficientViT(nn.Module):
    """EfficientViT-L backbone + SAM neck: ``(B, 3, S, S)`` -> ``(B, 256, S/4, S/4)``.

    Args:
        width_list: stem and stage widths (L0: 32, 64, 128, 256, 512).
        depth_list: blocks per stage after its down-sampling block (L0: 1, 1, 1, 4, 4).
        strides: stride of the stem and of each stage's first block.
        head_width, head_depth: the SAM neck's width and number of fused-MBConv blocks (256, 4).
        head_dim: channels per attention head (32).
    """

    def __init__(self, img_size: int = 256, width_list: Sequence[int] = (32, 64, 128, 256, 512),
                 depth_list: Sequence[int] = (1, 1, 1, 4, 4), strides: Sequence[int] = (1, 2, 2, 2, 2),
                 head_width: int = 256, head_depth: int = 4, head_dim: int = 32,
                 out_chans: int = 256) -> None:
        super().__init__()
        self.img_size = img_size
        self.grid = img_size // 4
        w, d = width_list, depth_list
        stem = [ConvNormAct(3, w[0], 3, strides[0])]
        stem += [Residual(res_block(w[0], w[0])) for _ in range(d[0])]
        self.stages = nn.ModuleList([nn.Sequential(*stem)])
        kinds = ("fmb", "fmb", "mb", "att")
        expands = (4, 4, 4, 6)
        for i, (kind, expand) in enumerate(zip(kinds, expands), start=1):
            fewer = kind in ("mb", "att")
            if kind == "fmb":
                blocks = [fused_mbconv(w[i - 1], w[i], strides[i], expand * 4)]
                blocks += [Residual(fused_mbconv(w[i], w[i], 1, expand)) for _ in range(d[i])]
            else:
                blocks = [mbconv(w[i - 1], w[i], strides[i], expand * 4, fewer_norm=fewer)]
                if kind == "mb":
                    blocks += [Residual(mbconv(w[i], w[i], 1, expand, fewer_norm=True)) for _ in range(d[i])]
                else:
                    blocks += [EfficientViTBlock(w[i], head_dim, expand) for _ in range(d[i])]
            self.stages.append(nn.Sequential(*blocks))
        self.inputs = nn.ModuleList([ConvNormAct(c, head_width, 1, act=False) for c in w[2:]])
        self.middle = nn.Sequential(*[Residual(fused_mbconv(head_width, head_width, 1, 1))
                                      for _ in range(head_depth)])
        self.output = nn.Conv2d(head_width, out_chans, 1)
        self.norm = LayerNorm2d(out_chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        fused = 0
        for proj, f in zip(self.inputs, feats[2:]):
            y = proj(f)
            if y.shape[-1] != self.grid:
                y = F.interpolate(y, size=(self.grid, self.grid), mode="bicubic", align_corners=False)
            fused = fused + y
        return self.norm(self.output(self.middle(fused)))
