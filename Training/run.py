"""One recipe end to end: stage 1 (distill), stage 2 (fine-tune), export.

    python -m Training.run --config Training/configs/rep_medsam.json --data data/slices
    torchrun --nproc_per_node 8 -m Training.run --config ... --data ...
    python -m Training.run --config ... --data ... --resume        # after an interruption
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from LiteMedSAMLib.errors import LiteMedSAMError

from .common import cleanup_runtime, load_config, setup_runtime
from .distill import run_distill
from .export import export
from .finetune import run_finetune


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m Training.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--data", required=True, help="folder of prepared slices (Training.prepare)")
    p.add_argument("--output", help="override the config's output folder")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--resume", action="store_true", help="continue each stage from its last checkpoint")
    p.add_argument("--skip-distill", action="store_true", help="stage 2 from the existing student")
    args = p.parse_args(argv)
    rt = setup_runtime(args.device)
    try:
        cfg = load_config(args.config, {"output": args.output} if args.output else None)
        if not args.skip_distill and cfg.get("distill", {}).get("enabled", True):
            run_distill(cfg, args.data, rt, args.resume)
        weights = run_finetune(cfg, args.data, rt, resume=args.resume)
        if rt.is_main:
            export(cfg, weights, Path(cfg["output"]) / "export")
    except LiteMedSAMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        cleanup_runtime(rt)
    return 0


if __name__ == "__main__":
    sys.exit(main())
