"""Shared pieces of the training scripts: recipe configs, devices and DistributedDataParallel,
checkpoints with resume, the per-step loss log and its plot.

A recipe (``Training/configs/*.json``) names the model it produces (``model``: a registry name;
its architecture comes from ``LiteMedSAMLib/models.json`` unless the recipe gives one), the
teacher, and the settings of each stage. The network is trained in its *training form*: the
manifest architecture without the inference-only transforms (``reparameterized``,
``quantization``), which :mod:`Training.export` applies at the end.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from LiteMedSAMLib.errors import LiteMedSAMError

INFERENCE_ONLY_KEYS = ("quantization",)


class DataError(LiteMedSAMError):
    """Training data that cannot be used (shapes, dtypes, empty labels, missing keys)."""


def load_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read a recipe and fill in the architecture from the model registry."""
    from LiteMedSAMLib.registry import get_spec

    path = Path(path)
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LiteMedSAMError(f"cannot read the training config {path}: {exc}") from exc
    for key, value in (overrides or {}).items():
        section, _, name = key.rpartition(".")
        (cfg.setdefault(section, {}) if section else cfg)[name] = value
    if "model" not in cfg:
        raise LiteMedSAMError(f"{path}: the config needs 'model' (the name the export registers)")
    if "architecture" not in cfg:
        spec = get_spec(cfg.get("base_model", cfg["model"]))
        cfg["architecture"] = copy.deepcopy(spec.architecture)
        cfg.setdefault("citation", spec.citation)
        cfg.setdefault("title", spec.title)
        cfg.setdefault("license", spec.license)
    cfg.setdefault("teacher", "litemedsam")
    cfg.setdefault("seed", 2024)
    cfg.setdefault("output", f"runs/{cfg['model']}")
    cfg["config_path"] = str(path)
    return cfg


def training_architecture(architecture: dict[str, Any]) -> dict[str, Any]:
    """The architecture to train: without fusion and quantization (applied at export)."""
    arch = copy.deepcopy(architecture)
    arch["encoder"].pop("reparameterized", None)
    for key in INFERENCE_ONLY_KEYS:
        arch.pop(key, None)
    return arch


# ------------------------------------------------------------------------------ devices / DDP
@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_runtime(device: str | None = None) -> Runtime:
    """Single process (CPU or one GPU), or one process per GPU under ``torchrun`` (DDP)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = torch.cuda.is_available() and device != "cpu"
        dist.init_process_group("nccl" if use_cuda else "gloo")
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dev = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
        return Runtime(dev, dist.get_rank(), world_size, local_rank)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return Runtime(torch.device(device))


def cleanup_runtime(rt: Runtime) -> None:
    if rt.distributed and dist.is_initialized():
        dist.destroy_process_group()


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


# ------------------------------------------------------------------------------ checkpoints
def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    epoch: int, step: int, extra: dict[str, Any] | None = None) -> None:
    """Write atomically (a crash never leaves a half checkpoint behind)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                "epoch": epoch, "step": step, **(extra or {})}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    unwrap(model).load_state_dict(state["model"], strict=True)
    if optimizer is not None and "optimizer" in state:
        optimizer.load_state_dict(state["optimizer"])
    return state


# ------------------------------------------------------------------------------ loss log
class LossLog:
    """Appends one CSV row per step (``step, epoch, loss, <terms>, lr, seconds``); plots it."""

    def __init__(self, path: Path, fields: list[str], resume: bool) -> None:
        self.path = path
        self.fields = ["step", "epoch", *fields, "lr", "seconds"]
        path.parent.mkdir(parents=True, exist_ok=True)
        if not (resume and path.exists()):
            with open(path, "w", newline="") as f:
                csv.writer(f).writerow(self.fields)
        self.start = time.time()

    def write(self, step: int, epoch: int, values: dict[str, float], lr: float) -> None:
        row = [step, epoch, *(f"{values[k]:.6g}" for k in self.fields[2:-2]), f"{lr:.3g}",
               f"{time.time() - self.start:.1f}"]
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow(row)

    def rows(self) -> list[dict[str, float]]:
        with open(self.path, newline="") as f:
            return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]

    def plot(self, title: str) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.rows()
        fig, ax = plt.subplots(figsize=(6, 3.5))
        steps = [r["step"] for r in rows]
        for key in self.fields[2:-2]:
            ax.plot(steps, [r[key] for r in rows], label=key)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title(title)
        ax.legend()
        fig.tight_layout()
        out = self.path.with_suffix(".png")
        fig.savefig(out, dpi=100)
        plt.close(fig)
        return out


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def stage_parser(prog: str, description: str, resume_help: str) -> argparse.ArgumentParser:
    """The options every training command shares: --config, --data, --output, --device, --resume."""
    p = argparse.ArgumentParser(prog=prog, description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--data", required=True, help="folder of prepared slices (Training.prepare)")
    p.add_argument("--output", help="override the config's output folder")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--resume", action="store_true", help=resume_help)
    return p


def run_stage(args: argparse.Namespace, body: Callable[[dict[str, Any], Runtime], object]) -> int:
    """Set up the (possibly distributed) runtime, load the config, run ``body(cfg, runtime)``;
    a data or config problem is printed as one line and exits with 2."""
    rt = setup_runtime(args.device)
    try:
        body(load_config(args.config, {"output": args.output} if args.output else None), rt)
    except LiteMedSAMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        cleanup_runtime(rt)
    return 0
