"""One recipe end to end: stage 1 (distill), stage 2 (fine-tune), export.

    python -m Training.run --config Training/configs/rep_medsam.json --data data/slices
    torchrun --nproc_per_node 8 -m Training.run --config ... --data ...
    python -m Training.run --config ... --data ... --resume        # after an interruption
"""

from __future__ import annotations

import sys
from pathlib import Path

from .common import run_stage, stage_parser
from .distill import run_distill
from .export import export
from .finetune import run_finetune


def main(argv: list[str] | None = None) -> int:
    p = stage_parser("python -m Training.run", __doc__, "continue each stage from its last checkpoint")
    p.add_argument("--skip-distill", action="store_true", help="stage 2 from the existing student")
    args = p.parse_args(argv)

    def all_stages(cfg: dict, rt) -> None:
        if not args.skip_distill and cfg.get("distill", {}).get("enabled", True):
            run_distill(cfg, args.data, rt, args.resume)
        weights = run_finetune(cfg, args.data, rt, resume=args.resume)
        if rt.is_main:
            export(cfg, weights, Path(cfg["output"]) / "export")

    return run_stage(args, all_stages)


if __name__ == "__main__":
    sys.exit(main())
