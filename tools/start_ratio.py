"""How close a 2D start comes to the 3D box: the ratio of their mean DSC, with intervals.

    litemedsam evaluate-suite --pipeline default --max-structures 5 -o box3d.json
    litemedsam evaluate-suite --pipeline default --max-structures 5 --start box2d -o box2d.json
    python tools/start_ratio.py box3d.json box2d.json --pipeline default

Issue #11 asks that a 2D box on the middle slice reach 0.95 of the 3D box's DSC on average.
The two reports (same split, same structure cap) are paired by case and structure; for the
pipeline it prints mean 2D / mean 3D over every structure both scored and over the structures
of 3-D volumes (a 2-D image's 2D start is the same prompt as its box), with bootstrap 95%
intervals resampling structures, then subjects (:func:`~LiteMedSAMLib.evaluation.statistics.
paired_ratio`), and how many structures reach 0.95 of their 3D score on their own.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from LiteMedSAMLib.errors import LiteMedSAMError  # noqa: E402
from LiteMedSAMLib.evaluation.statistics import by_structure_and_subject, paired_ratio  # noqa: E402

GOAL = 0.95


def paired_rows(box3d: dict, box2d: dict, pipeline: str) -> list[dict]:
    """``{case, subject, structure, volume, dsc3d, dsc2d}`` for every structure both reports
    scored with ``pipeline`` (in the 3D report's order)."""
    for report, start in ((box3d, "box3d"), (box2d, "box2d")):
        if report.get("start") != start:
            raise LiteMedSAMError(f"expected a --start {start} report, got start {report.get('start')!r}")
        if pipeline not in report["pipelines"]:
            raise LiteMedSAMError(f"pipeline {pipeline!r} is not in the {start} report ({report['pipelines']})")
    if box3d.get("split") != box2d.get("split"):
        raise LiteMedSAMError(f"the reports are of different splits ({box3d.get('split')}, {box2d.get('split')})")
    two = {(c["case"], s["name"]): s["metrics"][pipeline]["dsc"] for c in box2d["cases"] for s in c["structures"]}
    # a report written before subjects were recorded: the other report's, else the case itself
    subjects = {c["case"]: c.get("subject") for c in box2d["cases"]}
    rows = []
    for case in box3d["cases"]:
        subject = case.get("subject") or subjects.get(case["case"]) or case["case"]
        for s in case["structures"]:
            key = (case["case"], s["name"])
            if key in two:
                rows.append({"case": case["case"], "subject": subject,
                             "structure": s["name"], "volume": case.get("dimension", 3) == 3,
                             "dsc3d": s["metrics"][pipeline]["dsc"], "dsc2d": two[key]})
    if not rows:
        raise LiteMedSAMError("the two reports share no structure")
    return rows


def summarize(rows: list[dict]) -> dict:
    """The ratio over all rows and over those of 3-D volumes, by structure and by subject."""
    out = {}
    for key, chosen in (("structures", rows), ("volume_structures", [r for r in rows if r["volume"]])):
        if not chosen:
            continue
        a, b = [r["dsc2d"] for r in chosen], [r["dsc3d"] for r in chosen]
        out[key] = {**by_structure_and_subject(a, b, [r["subject"] for r in chosen], compare=paired_ratio),
                    "reaching_goal": sum(x >= GOAL * y for x, y in zip(a, b)), "count": len(chosen)}
    return out


def main(argv: list[str] | None = None) -> int:
    from LiteMedSAMLib.evaluation.statistics import PairedRatio

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("box3d", type=Path, help="evaluate-suite report with --start box3d")
    parser.add_argument("box2d", type=Path, help="the same split's report with --start box2d")
    parser.add_argument("--pipeline", default="default")
    args = parser.parse_args(argv)
    try:
        rows = paired_rows(json.loads(args.box3d.read_text()), json.loads(args.box2d.read_text()), args.pipeline)
    except LiteMedSAMError as error:
        parser.exit(2, f"start_ratio: {error}\n")
    for key, part in summarize(rows).items():
        what = "all structures" if key == "structures" else "structures of 3-D volumes"
        print(f"{args.pipeline}, 2D start / 3D box, {what} ({part['count']}): "
              f"{PairedRatio(**part['by_structure']).describe()}; by subject "
              f"{PairedRatio(**part['by_subject']).describe()}; {part['reaching_goal']} of {part['count']} "
              f"reach {GOAL} of their 3D score")
    return 0


if __name__ == "__main__":
    sys.exit(main())
