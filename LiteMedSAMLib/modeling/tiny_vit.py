"""TinyViT image encoder as used by LiteMedSAM (256x256 input, 256x64x64 embedding).

Re-implemented after TinyViT (Microsoft, MIT license) in the variant of MobileSAM and
LiteMedSAM: the patch embedding uses 1x1 convolutions (no down-sampling), stage 0 is made
of MBConv blocks at full resolution, stages 1-3 are windowed attention blocks, and the
last patch merging keeps the resolution so that the output grid is 64x64. A neck maps
the last stage's channels to SAM's 256-channel embedding.

Module and parameter names match the official checkpoint exactly.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .common import Conv2dBN, LayerNorm2d


class PatchEmbed(nn.Module):
    """Two 1x1 Conv-BN layers lifting the 3-channel image to ``embed_dim`` channels."""

    def __init__(self, in_chans: int, embed_dim: int, resolution: int) -> None:
        super().__init__()
        self.patches_resolution = (resolution, resolution)
        self.seq = nn.Sequential(
            Conv2dBN(in_chans, embed_dim // 2, 1, 1, 0),
            nn.GELU(),
            Conv2dBN(embed_dim // 2, embed_dim, 1, 1, 0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual block (1x1 expand, 3x3 depthwise, 1x1 project)."""

    def __init__(self, in_chans: int, out_chans: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(in_chans * expand_ratio)
        self.conv1 = Conv2dBN(in_chans, hidden, ks=1)
        self.act1 = nn.GELU()
        self.conv2 = Conv2dBN(hidden, hidden, ks=3, stride=1, pad=1, groups=hidden)
        self.act2 = nn.GELU()
        self.conv3 = Conv2dBN(hidden, out_chans, ks=1, bn_weight_init=0.0)
        self.act3 = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.act1(self.conv1(x))
        x = self.act2(self.conv2(x))
        x = self.conv3(x)
        x += shortcut
        return self.act3(x)


class PatchMerging(nn.Module):
    """Conv-based down-sampling between stages; returns tokens ``(B, H*W, out_dim)``."""

    def __init__(self, input_resolution: tuple[int, int], dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.input_resolution = input_resolution
        self.act = nn.GELU()
        self.conv1 = Conv2dBN(dim, out_dim, 1, 1, 0)
        self.conv2 = Conv2dBN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = Conv2dBN(out_dim, out_dim, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            h, w = self.input_resolution
            x = x.view(len(x), h, w, -1).permute(0, 3, 1, 2)
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        x = self.conv3(x)
        return x.flatten(2).transpose(1, 2)


class ConvLayer(nn.Module):
    """Stage 0: MBConv blocks followed by an optional patch merging."""

    def __init__(self, dim: int, depth: int, expand_ratio: float,
                 downsample: PatchMerging | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([MBConv(dim, dim, expand_ratio) for _ in range(depth)])
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class Mlp(nn.Module):
    """Pre-norm feed-forward block of a TinyViT block."""

    def __init__(self, in_features: int, hidden_features: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_features)
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class Attention(nn.Module):
    """Multi-head self-attention inside a window, with learned relative position biases."""

    def __init__(self, dim: int, key_dim: int, num_heads: int, resolution: tuple[int, int]) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = key_dim ** -0.5
        self.key_dim = key_dim
        self.d = key_dim  # attention ratio 1: value dim equals key dim
        self.dh = self.d * num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, self.dh + 2 * key_dim * num_heads)
        self.proj = nn.Linear(self.dh, dim)

        points = list(itertools.product(range(resolution[0]), range(resolution[1])))
        offsets: dict[tuple[int, int], int] = {}
        idxs = []
        for p1 in points:
            for p2 in points:
                offset = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
                offsets.setdefault(offset, len(offsets))
                idxs.append(offsets[offset])
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, len(offsets)))
        self.register_buffer("attention_bias_idxs",
                             torch.LongTensor(idxs).view(len(points), len(points)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        x = self.norm(x)
        q, k, v = self.qkv(x).view(b, n, self.num_heads, -1).split(
            [self.key_dim, self.key_dim, self.d], dim=3)
        q, k, v = (t.permute(0, 2, 1, 3) for t in (q, k, v))
        bias = self.attention_biases[:, self.attention_bias_idxs]
        attn = (q @ k.transpose(-2, -1)) * self.scale + bias
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(b, n, self.dh)
        return self.proj(x)


class TinyViTBlock(nn.Module):
    """Window attention, depthwise local convolution, then MLP, each with a residual."""

    def __init__(self, dim: int, input_resolution: tuple[int, int], num_heads: int,
                 window_size: int, mlp_ratio: float, local_conv_size: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.input_resolution = input_resolution
        self.window_size = window_size
        self.attn = Attention(dim, dim // num_heads, num_heads, (window_size, window_size))
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = Conv2dBN(dim, dim, ks=local_conv_size, stride=1,
                                   pad=local_conv_size // 2, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.input_resolution
        b, length, c = x.shape
        ws = self.window_size
        res_x = x
        if h == ws and w == ws:
            x = self.attn(x)
        else:
            x = x.view(b, h, w, c)
            pad_b = (ws - h % ws) % ws
            pad_r = (ws - w % ws) % ws
            if pad_b or pad_r:
                x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
            ph, pw = h + pad_b, w + pad_r
            nh, nw = ph // ws, pw // ws
            x = x.view(b, nh, ws, nw, ws, c).transpose(2, 3).reshape(b * nh * nw, ws * ws, c)
            x = self.attn(x)
            x = x.view(b, nh, nw, ws, ws, c).transpose(2, 3).reshape(b, ph, pw, c)
            if pad_b or pad_r:
                x = x[:, :h, :w].contiguous()
            x = x.view(b, length, c)
        x = res_x + x
        x = x.transpose(1, 2).reshape(b, c, h, w)
        x = self.local_conv(x)
        x = x.view(b, c, length).transpose(1, 2)
        return x + self.mlp(x)


class BasicLayer(nn.Module):
    """Stages 1-3: TinyViT blocks followed by an optional patch merging."""

    def __init__(self, dim: int, input_resolution: tuple[int, int], depth: int, num_heads: int,
                 window_size: int, mlp_ratio: float, local_conv_size: int,
                 downsample: PatchMerging | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([
            TinyViTBlock(dim, input_resolution, num_heads, window_size, mlp_ratio, local_conv_size)
            for _ in range(depth)])
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class TinyViT(nn.Module):
    """TinyViT encoder: ``(B, 3, S, S)`` float image in [0, 1] -> ``(B, 256, S/4, S/4)`` embedding.

    Args:
        img_size: input side length S (256 for LiteMedSAM).
        embed_dims: channels of the four stages.
        depths: number of blocks per stage.
        num_heads: attention heads per stage (stage 0 has no attention; its value is unused).
        window_sizes: attention window per stage.
        merge_strides: stride of the patch merging after stages 0, 1 and 2. LiteMedSAM uses
            ``(2, 2, 1)``: 256 -> 128 -> 64 -> 64.
        out_chans: channels of the neck's output embedding.
    """

    def __init__(self, img_size: int = 256, in_chans: int = 3,
                 embed_dims: Sequence[int] = (64, 128, 160, 320),
                 depths: Sequence[int] = (2, 2, 6, 2),
                 num_heads: Sequence[int] = (2, 4, 5, 10),
                 window_sizes: Sequence[int] = (7, 7, 14, 7),
                 merge_strides: Sequence[int] = (2, 2, 1),
                 mlp_ratio: float = 4.0, mbconv_expand_ratio: float = 4.0,
                 local_conv_size: int = 3, out_chans: int = 256) -> None:
        super().__init__()
        if not (len(embed_dims) == len(depths) == len(num_heads) == len(window_sizes)
                == len(merge_strides) + 1):
            raise ValueError("embed_dims, depths, num_heads and window_sizes need one entry per "
                             "stage and merge_strides one less")
        self.img_size = img_size
        self.patch_embed = PatchEmbed(in_chans, embed_dims[0], img_size)
        self.layers = nn.ModuleList()
        resolution = img_size
        for i, dim in enumerate(embed_dims):
            downsample = None
            next_resolution = resolution
            if i < len(embed_dims) - 1:
                downsample = PatchMerging((resolution, resolution), dim, embed_dims[i + 1],
                                          merge_strides[i])
                next_resolution = (resolution - 1) // merge_strides[i] + 1
            if i == 0:
                layer: nn.Module = ConvLayer(dim, depths[i], mbconv_expand_ratio, downsample)
            else:
                layer = BasicLayer(dim, (resolution, resolution), depths[i], num_heads[i],
                                   window_sizes[i], mlp_ratio, local_conv_size, downsample)
            self.layers.append(layer)
            resolution = next_resolution
        self.out_resolution = resolution
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.LayerNorm):
            nn.init.constant_(m.bias, 0)
            nn.init.constant_(m.weight, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        b, _, c = x.size()
        r = self.out_resolution
        x = x.view(b, r, r, c).permute(0, 3, 1, 2)
        return self.neck(x)
