"""RepViT image encoder (Rep-MedSAM and the RepViT-M0.6 student), with re-parameterization.

RepViT (Wang et al., "RepViT: Revisiting Mobile CNN From ViT Perspective", CVPR 2024,
THU-MIG/RepViT, Apache-2.0) is a MobileNet-style CNN whose token mixer is a RepVGG-style
depthwise block: at training time a 3x3 depthwise Conv-BN, a 1x1 depthwise conv and an
identity run in parallel and are followed by a BatchNorm; at inference the three branches and
both BatchNorms are folded into one 3x3 depthwise convolution (structural re-parameterization).
:meth:`RepViT.fuse` returns that inference form, which gives the same outputs.

Rep-MedSAM (Wei et al., CVPR 2024 "MedSAM on Laptop" challenge, muxin-wei/Rep-MedSAM) uses
RepViT-M1.0 as the LiteMedSAM encoder for 256x256 inputs: the stem keeps full resolution
(two 3x3 Conv-BN, stride 1), two stride-2 stages bring it to 64x64, the last stage keeps
64x64, and SAM's neck maps the channels to the 256-channel embedding. Module names follow
that code (``features``, ``token_mixer``, ``channel_mixer``) so that its checkpoints map
easily; the code here is our own.

Each stage is described by ``(channels, depth, stride)`` in the model manifest; the first block
of every stage after the first changes the width (stride 1 or 2), and squeeze-excitation sits
on every other block as in RepViT's configurations (see :func:`stage_blocks`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .common import Conv2dBN, LayerNorm2d


class SqueezeExcite(nn.Module):
    """Channel attention: global mean -> 1x1 reduce -> ReLU -> 1x1 expand -> sigmoid gate."""

    def __init__(self, channels: int, ratio: float = 0.25, divisor: int = 8) -> None:
        super().__init__()
        hidden = _make_divisible(channels * ratio, divisor)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(s)


def _make_divisible(value: float, divisor: int = 8) -> int:
    """Round to a multiple of ``divisor`` without going more than 10% down (MobileNet rule)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


def _fold_bn(weight: torch.Tensor, bias: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BatchNorm that follows a conv ``(weight, bias)`` into that conv."""
    scale = bn.weight / (bn.running_var + bn.eps) ** 0.5
    return weight * scale[:, None, None, None], bn.bias + (bias - bn.running_mean) * scale


class RepVGGDW(nn.Module):
    """Training form: ``BN(DWConv3x3BN(x) + DWConv1x1(x) + x)``; :meth:`fuse` -> one 3x3 DW conv."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = Conv2dBN(dim, dim, 3, 1, 1, groups=dim)
        self.conv1 = nn.Conv2d(dim, dim, 1, 1, 0, groups=dim)
        self.bn = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x) + self.conv1(x) + x)

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        conv = self.conv.fuse()
        one_by_one = F.pad(self.conv1.weight, [1, 1, 1, 1])
        identity = F.pad(torch.ones_like(self.conv1.weight), [1, 1, 1, 1])
        weight, bias = _fold_bn(conv.weight + one_by_one + identity, conv.bias + self.conv1.bias, self.bn)
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
        return conv


class Residual(nn.Module):
    """``x + m(x)``."""

    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.m(x)


def _ffn(dim: int, hidden: int, out: int, residual: bool = True) -> nn.Sequential:
    # Inside a residual the last BatchNorm starts at 0 (the block starts as the identity);
    # without one it starts at 1, or the block would output zeros (and so the encoder).
    return nn.Sequential(Conv2dBN(dim, hidden, 1), nn.GELU(),
                         Conv2dBN(hidden, out, 1, bn_weight_init=0.0 if residual else 1.0))


class RepViTBlock(nn.Module):
    """Token mixer (spatial) then channel mixer (FFN), as in RepViT.

    * same width, stride 1: ``RepVGGDW`` (+SE), residual FFN;
    * stride 2 (down-sampling): 3x3 depthwise Conv-BN with stride 2 (+SE), 1x1 Conv-BN to
      ``out_dim``, residual FFN;
    * new width at stride 1 (Rep-MedSAM's last stage): ``RepVGGDW`` (+SE), then a plain FFN
      from ``in_dim`` to ``out_dim``.
    """

    def __init__(self, in_dim: int, out_dim: int, stride: int, use_se: bool, expand: int = 2) -> None:
        super().__init__()
        se: nn.Module = SqueezeExcite(in_dim) if use_se else nn.Identity()
        if stride == 2:
            self.token_mixer = nn.Sequential(Conv2dBN(in_dim, in_dim, 3, 2, 1, groups=in_dim), se,
                                             Conv2dBN(in_dim, out_dim, 1))
            self.channel_mixer: nn.Module = Residual(_ffn(out_dim, expand * out_dim, out_dim))
        elif stride == 1:
            self.token_mixer = nn.Sequential(RepVGGDW(in_dim), se)
            if in_dim == out_dim:
                self.channel_mixer = Residual(_ffn(in_dim, expand * in_dim, out_dim))
            else:
                self.channel_mixer = _ffn(in_dim, expand * in_dim, out_dim, residual=False)
        else:
            raise ValueError(f"RepViT block stride must be 1 or 2, got {stride}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.channel_mixer(self.token_mixer(x))


def stage_blocks(embed_dims: Sequence[int], depths: Sequence[int],
                 strides: Sequence[int]) -> list[tuple[int, int, int, bool]]:
    """Expand per-stage ``(channels, depth, stride)`` into ``(in, out, stride, use_se)`` per block.

    The first block of stages 1..n changes the width with the stage's stride and has no SE;
    the other blocks alternate SE on/off starting with on, and the last block before a
    width change has none (RepViT's M0.6/M1.0 configurations follow exactly this rule).
    """
    blocks = []
    in_dim = embed_dims[0]
    for s, (dim, depth, stride) in enumerate(zip(embed_dims, depths, strides)):
        plain = depth
        if s > 0:
            blocks.append((in_dim, dim, stride, False))
            plain -= 1
        for i in range(plain):
            last_before_change = s < len(embed_dims) - 1 and i == plain - 1
            blocks.append((dim, dim, 1, i % 2 == 0 and not last_before_change))
        in_dim = dim
    return blocks


class RepViT(nn.Module):
    """RepViT encoder: ``(B, 3, S, S)`` in [0, 1] -> ``(B, out_chans, S/4, S/4)`` (strides permitting).

    Args:
        img_size: input side S (256).
        embed_dims: channels of each stage (RepViT-M1.0: 56, 112, 224, 448; M0.6: 40, 80, 160, 320).
        depths: blocks per stage, the width-changing first block included
            (M1.0: 3, 4, 16, 3; M0.6: 2, 3, 10, 2).
        strides: stride of each stage's first block (the first stage's is unused); with a
            stride-1 stem, ``(1, 2, 2, 1)`` gives a 64x64 grid at 256 input.
        stem_stride: total stride of the two 3x3 stem convolutions (1 or 2 each).
        out_chans: channels of the SAM neck's output embedding.
    """

    def __init__(self, img_size: int = 256, embed_dims: Sequence[int] = (56, 112, 224, 448),
                 depths: Sequence[int] = (3, 4, 16, 3), strides: Sequence[int] = (1, 2, 2, 1),
                 stem_stride: int = 1, out_chans: int = 256) -> None:
        super().__init__()
        if not len(embed_dims) == len(depths) == len(strides):
            raise ValueError("embed_dims, depths and strides need one entry per stage")
        self.img_size = img_size
        s1 = 2 if stem_stride >= 2 else 1
        s2 = 2 if stem_stride >= 4 else 1
        stem = nn.Sequential(Conv2dBN(3, embed_dims[0] // 2, 3, s1, 1), nn.GELU(),
                             Conv2dBN(embed_dims[0] // 2, embed_dims[0], 3, s2, 1))
        self.features = nn.ModuleList(
            [stem] + [RepViTBlock(i, o, st, se) for i, o, st, se in stage_blocks(embed_dims, depths, strides)])
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for f in self.features:
            x = f(x)
        return self.neck(x)

    @torch.no_grad()
    def fuse(self) -> "RepViT":
        """Re-parameterize in place for inference: every Conv-BN and ``RepVGGDW`` becomes one conv.

        Needs eval mode (BatchNorm running statistics); the result gives the same outputs as
        the training form (to float rounding) and has no BatchNorm left. Returns ``self``.
        """
        if self.training:
            raise RuntimeError("fuse() needs eval mode: call .eval() first")
        _fuse_children(self)
        return self


def _fuse_children(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, (RepVGGDW, Conv2dBN)):
            setattr(module, name, child.fuse())
        else:
            _fuse_children(child)


def is_fused(module: nn.Module) -> bool:
    """True when no BatchNorm is left (the inference form)."""
    return not any(isinstance(m, nn.BatchNorm2d) for m in module.modules())
