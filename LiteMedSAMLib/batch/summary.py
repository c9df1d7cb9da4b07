"""``OUTDIR/summary.csv``: one row per case, in manifest order, rewritten atomically (temporary
file, then rename) after every case, so that it is whole whenever the batch stops.

Statuses: ``done`` (segmented and written in this run), ``skipped`` (its output exists and its
inputs and options are unchanged since it was done), ``failed`` (``error`` says why), ``running``
(in progress; left so only when the batch was killed), ``not run`` (the batch stopped, by Ctrl-C,
before it). ``segments`` and ``voxels`` hold the segment names and their voxel counts, in the
same order, separated by ``;``. ``fingerprint`` decides whether a re-run skips the case.
"""

from __future__ import annotations

import csv
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

SUMMARY_NAME = "summary.csv"
STATUSES = ("done", "skipped", "failed", "running", "not run")


@dataclass
class SummaryRow:
    """One case's line of the summary."""

    output: str
    image: str
    rows: str
    status: str = "not run"
    seconds: str = ""
    segments: str = ""
    voxels: str = ""
    error: str = ""
    fingerprint: str = ""

    @property
    def voxel_counts(self) -> dict[str, int]:
        """Segment name -> voxel count."""
        if not self.segments:
            return {}
        return dict(zip(self.segments.split(";"), map(int, self.voxels.split(";"))))


COLUMNS = [f.name for f in fields(SummaryRow)]


def read_summary(path: Path) -> dict[str, SummaryRow]:
    """The rows of an earlier run's summary by output file name (``{}`` when there is none or
    it is unreadable: then every case counts as new)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return {row["output"]: SummaryRow(**{c: row.get(c) or "" for c in COLUMNS})
                    for row in csv.DictReader(f) if row.get("output")}
    except (OSError, csv.Error, KeyError, TypeError):
        return {}


def write_summary(path: Path, rows: list[SummaryRow]) -> None:
    """Write all rows to ``path`` atomically."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, COLUMNS)
            writer.writeheader()
            for row in rows:
                writer.writerow(asdict(row))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
