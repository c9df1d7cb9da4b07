"""Export a trained model into the registry's format: inference-form weights + a manifest.

The fine-tuned (training-form) weights are loaded strictly, then turned into the form the
manifest architecture describes: RepViT encoders are re-parameterized (``reparameterized``:
branches and BatchNorms fused; the export checks that the outputs stay the same) and models
with ``quantization: dynamic_int8`` get int8 linear layers. The result must load strictly into
``build_lite_medsam(architecture)``. Written to the output folder: ``<weights file>`` and
``<model>.json`` (a manifest with the SHA-256 and size); put the folder in
``LITEMEDSAM_MODELS_DIR`` and ``litemedsam models`` lists it as installed.

    python -m Training.export --config Training/configs/rep_medsam.json -o models/
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

from LiteMedSAMLib.errors import LiteMedSAMError
from LiteMedSAMLib.modeling import build_lite_medsam
from LiteMedSAMLib.modeling.lite_medsam import quantize
from LiteMedSAMLib.registry import file_sha256, get_spec

from .common import load_config, training_architecture

FUSE_ATOL = 1e-3  # embeddings are O(1); fusion only reorders float sums


def inference_model(cfg: dict, weights: Path):
    """Training-form weights -> the manifest's inference form (fused, quantized), in eval mode."""
    arch = cfg["architecture"]
    model = build_lite_medsam(training_architecture(arch))
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    model.eval()
    if arch["encoder"].get("reparameterized"):
        x = torch.rand(1, 3, arch.get("image_size", 256), arch.get("image_size", 256))
        with torch.no_grad():
            before = model.image_encoder(x)
            model.image_encoder.fuse()
            diff = (model.image_encoder(x) - before).abs().max().item()
        if diff > FUSE_ATOL:
            raise LiteMedSAMError(f"re-parameterization changed the embedding by {diff:.2e} (> {FUSE_ATOL})")
        print(f"re-parameterized encoder: max |difference| {diff:.2e}")
    if arch.get("quantization"):
        model = quantize(model, arch["quantization"])
    check = build_lite_medsam(arch)
    check.load_state_dict(model.state_dict(), strict=True)  # the registry will load it like this
    return model


def export(cfg: dict, weights: Path, out: Path, float16: bool = False) -> Path:
    """Write the weights and the manifest; returns the manifest path. With ``float16`` the
    floating-point tensors are stored as float16 (the caller has checked the masks do not
    change; the registry loads them into the float32 model)."""
    name = cfg["model"]
    model = inference_model(cfg, weights)
    filename = cfg.get("weights_filename") or _default_filename(name)
    out.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    if float16:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    torch.save(state, out / filename)
    params = sum(p.numel() for p in build_lite_medsam(training_architecture(cfg["architecture"])).parameters())
    try:
        base_description = get_spec(cfg.get("base_model", name)).description
    except LiteMedSAMError:
        base_description = ""
    entry = {
        "title": cfg.get("title", name),
        "description": (f"Trained with Training/ from {Path(cfg['config_path']).name} "
                        f"({params / 1e6:.2f} M parameters). " + base_description).strip(),
        "architecture": cfg["architecture"],
        "weights": {"filename": filename, "sha256": file_sha256(out / filename),
                    "size": (out / filename).stat().st_size,
                    "source": f"Training/ export, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"},
        "license": cfg.get("license", "Apache-2.0"),
        "citation": cfg.get("citation", ""),
        "training": {"config": cfg["config_path"], "teacher": cfg["teacher"]},
    }
    manifest = out / f"{name}.json"
    manifest.write_text(json.dumps({"models": {name: entry}}, indent=2) + "\n", encoding="utf-8")
    print(f"exported {name}: {out / filename} (SHA-256 {entry['weights']['sha256'][:12]}...), manifest {manifest}")
    return manifest


def _default_filename(name: str) -> str:
    try:
        return get_spec(name).weights["filename"]
    except LiteMedSAMError:
        return f"{name}.pth"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m Training.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--weights", help="fine-tuned weights (default <output>/finetune/model.pth)")
    p.add_argument("-o", "--output", help="folder for weights + manifest (default <output>/export)")
    args = p.parse_args(argv)
    try:
        cfg = load_config(args.config)
        weights = Path(args.weights or Path(cfg["output"]) / "finetune" / "model.pth")
        export(cfg, weights, Path(args.output or Path(cfg["output"]) / "export"))
    except LiteMedSAMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
