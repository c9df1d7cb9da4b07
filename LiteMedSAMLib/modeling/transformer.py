"""SAM's two-way transformer: prompt tokens and image embedding attend to each other.

Re-implemented after Segment Anything (Meta, Apache-2.0); names match its checkpoints.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .common import MLPBlock, channel_layer_norm


class Attention(nn.Module):
    """Multi-head attention whose projections may reduce the width by ``downsample_rate``."""

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads:
            raise ValueError("num_heads must divide embedding_dim // downsample_rate")
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.v_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)

    def _separate_heads(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        q = self._separate_heads(self.q_proj(q))
        k = self._separate_heads(self.k_proj(k))
        v = self._separate_heads(self.v_proj(v))
        attn = q @ k.permute(0, 1, 3, 2)
        attn = attn / math.sqrt(q.shape[-1])
        attn = torch.softmax(attn, dim=-1)
        out = (attn @ v).transpose(1, 2)
        b, n, h, c = out.shape
        return self.out_proj(out.reshape(b, n, h * c))

    # The same attention with the image side channels-first, ``(B, C, N)`` (see
    # TwoWayTransformer.channels_first): the image's projections are matrix products on the
    # left, its heads a reshape, and every transpose left is of the few tokens' tensors.
    @staticmethod
    def _linear_channels_first(proj: nn.Linear, x: Tensor) -> Tensor:
        """``proj`` on a channels-first ``(B, C, N)``: ``(B, C', N)``."""
        return torch.matmul(proj.weight, x) + proj.bias[:, None]

    def _project_image(self, proj: nn.Linear, x: Tensor) -> Tensor:
        """``(B, C, N)`` -> per head ``(B, heads, C' / heads, N)``."""
        b, _, n = x.shape
        return self._linear_channels_first(proj, x).reshape(b, self.num_heads, -1, n)

    def attend_to_image(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Tokens ``q`` ``(B, T, C)`` attend to a channels-first image ``k``, ``v`` ``(B, C, N)``;
        ``(B, T, C)`` as :meth:`forward` on the image's tokens."""
        q = self._separate_heads(self.q_proj(q))
        k, v = self._project_image(self.k_proj, k), self._project_image(self.v_proj, v)
        attn = q @ k
        attn = attn / math.sqrt(q.shape[-1])
        attn = torch.softmax(attn, dim=-1)
        out = (attn @ v.transpose(-1, -2)).transpose(1, 2)
        b, n, h, c = out.shape
        return self.out_proj(out.reshape(b, n, h * c))

    def attend_from_image(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """A channels-first image ``q`` ``(B, C, N)`` attends to tokens ``k``, ``v`` ``(B, T, C)``;
        ``(B, C, N)``, the channels-first form of :meth:`forward`'s output for the image's tokens
        (attention weights held as ``(T, N)`` per head, softmax over the tokens)."""
        q = self._project_image(self.q_proj, q)
        k, v = self._separate_heads(self.k_proj(k)), self._separate_heads(self.v_proj(v))
        attn = k @ q
        attn = attn / math.sqrt(q.shape[-2])
        attn = torch.softmax(attn, dim=-2)
        out = v.transpose(-1, -2) @ attn
        b, h, c, n = out.shape
        return self._linear_channels_first(self.out_proj, out.reshape(b, h * c, n))


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, token-to-image attention, MLP, image-to-token attention."""

    def __init__(self, embedding_dim: int, num_heads: int, mlp_dim: int,
                 attention_downsample_rate: int = 2, skip_first_layer_pe: bool = False) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLPBlock(embedding_dim, mlp_dim, nn.ReLU)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(self, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pe: Tensor,
                channels_first: bool = False) -> tuple[Tensor, Tensor]:
        """``channels_first``: ``keys`` and ``key_pe`` are ``(B, C, N)`` (and so is the output's
        ``keys``) instead of ``(B, N, C)``; see :attr:`TwoWayTransformer.channels_first`."""
        if self.skip_first_layer_pe:
            queries = self.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q=q, k=q, v=queries)
        queries = self.norm1(queries)
        q = queries + query_pe
        k = keys + key_pe
        to_image = self.cross_attn_token_to_image
        to_image = to_image.attend_to_image if channels_first else to_image
        queries = self.norm2(queries + to_image(q=q, k=k, v=keys))
        queries = self.norm3(queries + self.mlp(queries))
        q = queries + query_pe
        k = keys + key_pe
        if channels_first:
            attended = self.cross_attn_image_to_token.attend_from_image(q=k, k=q, v=queries)
            keys = channel_layer_norm(keys + attended, self.norm4.weight, self.norm4.bias, self.norm4.eps)
        else:
            keys = self.norm4(keys + self.cross_attn_image_to_token(q=k, k=q, v=queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """Decoder transformer: ``(B, C, h, w)`` image embedding and ``(B, N, C)`` tokens in,
    processed tokens ``(B, N, C)`` and image keys ``(B, h*w, C)`` out.

    With :attr:`channels_first` the image stream stays ``(B, C, h*w)`` throughout and the keys
    come out ``(B, C, h, w)``: the same function (equal to float rounding, ~1e-5) without
    SAM's transposes of the 4096-token image, which OpenVINO runs slowly (about a fifth of
    the decoder's time). The OpenVINO conversion traces that form; eager PyTorch keeps SAM's
    layout, whose results match the official implementation bit for bit.
    """

    channels_first = False

    def __init__(self, depth: int, embedding_dim: int, num_heads: int, mlp_dim: int,
                 attention_downsample_rate: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList([
            TwoWayAttentionBlock(embedding_dim, num_heads, mlp_dim, attention_downsample_rate,
                                 skip_first_layer_pe=(i == 0))
            for i in range(depth)])
        self.final_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(self, image_embedding: Tensor, image_pe: Tensor,
                point_embedding: Tensor) -> tuple[Tensor, Tensor]:
        b, c, h, w = image_embedding.shape
        image_embedding, image_pe = image_embedding.flatten(2), image_pe.flatten(2)
        if not self.channels_first:
            image_embedding, image_pe = image_embedding.permute(0, 2, 1), image_pe.permute(0, 2, 1)
        queries, keys = point_embedding, image_embedding
        for layer in self.layers:
            queries, keys = layer(queries=queries, keys=keys, query_pe=point_embedding, key_pe=image_pe,
                                  channels_first=self.channels_first)
        q = queries + point_embedding
        k = keys + image_pe
        to_image = self.final_attn_token_to_image
        to_image = to_image.attend_to_image if self.channels_first else to_image
        queries = self.norm_final_attn(queries + to_image(q=q, k=k, v=keys))
        return queries, keys.reshape(b, c, h, w) if self.channels_first else keys
