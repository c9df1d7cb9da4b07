"""Input channel transforms: what the encoder's three input channels hold.

The official preprocessing repeats a grayscale slice into three identical channels. Some
challenge entries put derived images there instead; the EfficientViT-SAM-L0 recipe of this
project uses (raw, anisotropic diffusion, histogram equalisation), which sharpens edges and
evens out contrast before the encoder sees the slice. The transforms run inside the model
(on the ``(B, 3, 256, 256)`` tensor in [0, 1] that :func:`~LiteMedSAMLib.preprocessing.prepare_slice`
makes), so the predictor, the 3D propagation, the training scripts and exported backends all
apply them identically. They have no parameters (nothing in the state dict).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def anisotropic_diffusion(gray: torch.Tensor, iterations: int = 10, kappa: float = 0.1,
                          gamma: float = 0.2) -> torch.Tensor:
    """Perona-Malik diffusion (exponential conductance) of ``(B, 1, H, W)`` images in [0, 1].

    Perona and Malik, IEEE TPAMI 12(7), 1990. ``gamma <= 0.25`` keeps the 4-neighbour scheme
    stable; borders are treated as reflecting (zero flux).
    """
    x = gray
    for _ in range(iterations):
        p = F.pad(x, (1, 1, 1, 1), mode="replicate")
        c = x
        flux = 0
        for d in (p[..., :-2, 1:-1] - c, p[..., 2:, 1:-1] - c, p[..., 1:-1, :-2] - c, p[..., 1:-1, 2:] - c):
            flux = flux + torch.exp(-(d / kappa) ** 2) * d
        x = x + gamma * flux
    return x


def equalize_histogram(gray: torch.Tensor) -> torch.Tensor:
    """Histogram equalisation of ``(B, 1, H, W)`` images in [0, 1] on 256 levels (as OpenCV's
    ``equalizeHist``: the cumulative histogram rescaled so that the first occupied level is 0)."""
    b = gray.shape[0]
    levels = (gray.clamp(0, 1) * 255).round().long().view(b, -1)
    out = torch.empty_like(gray).view(b, -1)
    for i in range(b):
        cdf = torch.bincount(levels[i], minlength=256).cumsum(0).to(gray.dtype)
        first = cdf[cdf > 0][0]
        span = (cdf[-1] - first).clamp(min=1)
        out[i] = ((cdf - first) / span).clamp(0, 1)[levels[i]]
    return out.view_as(gray)


class RawDiffusionHistEq(nn.Module):
    """``(B, 3, H, W)`` -> (gray, anisotropic diffusion of gray, histogram-equalised gray);
    gray is the channel mean (the slice itself for grayscale images)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        gray = images.mean(dim=1, keepdim=True)
        return torch.cat([gray, anisotropic_diffusion(gray), equalize_histogram(gray)], dim=1)


# Transform by manifest name (``architecture.input_channels``); "repeat" is the official input.
INPUT_TRANSFORMS: dict[str, type[nn.Module]] = {
    "repeat": nn.Identity,
    "raw_diffusion_histeq": RawDiffusionHistEq,
}
