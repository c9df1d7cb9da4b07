"""The batch manifest: a CSV file with a header, one row per box.

Columns (names fixed, scripts rely on them; an empty cell counts as absent):

- ``image`` (required): an image file or a DICOM series folder.
- exactly one of ``box`` (six voxel indices ``x0 y0 z0 x1 y1 z1`` separated by spaces),
  ``box_mm`` (two opposite corners ``x y z x y z`` in LPS millimetres) or ``roi`` (a Slicer
  ``.mrk.json`` markups file; each ROI in it is a box).
- optional ``name`` (the segment's name), ``preset``, ``model`` (the case's, else the command's).

Rows with the same image are one case: their boxes are segmented together (sharing slice
embeddings) and written to ``OUTDIR/<image file stem>.seg.nrrd``. Relative paths are relative to
the manifest's folder. A bad row makes its case fail with a message naming the row; a manifest
without an ``image`` column or without a usable row is an error at once.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LiteMedSAMError

log = logging.getLogger(__name__)

COLUMNS = ("image", "box", "box_mm", "roi", "name", "preset", "model")
BOX_COLUMNS = ("box", "box_mm", "roi")
OUTPUT_SUFFIX = ".seg.nrrd"
FINGERPRINT_VERSION = 1  # bump when what a fingerprint covers changes: every case is redone once
_DOUBLE_SUFFIXES = (".seg.nrrd", ".nii.gz")


@dataclass(frozen=True)
class ManifestRow:
    """One valid manifest row: a box prompt on an image.

    ``line`` is the row's line number in the file (the header is line 1); ``kind`` the box
    column used; ``value`` six numbers (``box``: voxel indices, ``box_mm``: LPS mm) or the
    ROI file's path.
    """

    line: int
    image: Path
    kind: str
    value: tuple[float, ...] | Path
    name: str | None = None
    preset: str | None = None
    model: str | None = None


@dataclass
class Case:
    """All rows of one image: segmented together, written to one ``output`` file.

    ``errors`` holds the row problems found while reading the manifest (the case then fails
    without being run); ``lines`` the line numbers of all its rows, good or bad.
    """

    image: Path
    lines: list[int] = field(default_factory=list)
    rows: list[ManifestRow] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    output: Path | None = None

    @property
    def where(self) -> str:
        """``row 4`` or ``rows 2, 3, 7``: names the case in messages."""
        return ("row " if len(self.lines) == 1 else "rows ") + ", ".join(map(str, self.lines))

    @property
    def preset(self) -> str | None:
        return next((r.preset for r in self.rows if r.preset), None)

    @property
    def model(self) -> str | None:
        return next((r.model for r in self.rows if r.model), None)


# ------------------------------------------------------------------------------ reading
def read_manifest(path: str | Path) -> list[Case]:
    """The cases of a manifest, in the order of their first row.

    Raises:
        LiteMedSAMError: the file is missing or unreadable, has no ``image`` column, or no
            row of it is usable (every row's problem is then listed).
    """
    path = Path(path)
    if not path.is_file():
        raise LiteMedSAMError(f"manifest not found: {path}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [(h or "").strip().lower() for h in reader.fieldnames or []]
            if "image" not in header:
                raise LiteMedSAMError(f"{path}: the manifest has no 'image' column; its header must name "
                                      f"the columns ({', '.join(COLUMNS)}), e.g. 'image,box'")
            unknown = [h for h in header if h not in COLUMNS]
            if unknown:
                log.warning("%s: ignoring unknown column(s) %s (known: %s)", path, ", ".join(unknown),
                            ", ".join(COLUMNS))
            raw_rows = []
            for values in reader:
                cells = {h: (v or "").strip() for h, v in zip(header, values.values()) if isinstance(v, str)}
                raw_rows.append((reader.line_num, cells))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LiteMedSAMError(f"{path} is not a readable CSV manifest: {exc}") from None
    cases: dict[Path, Case] = {}
    problems = []
    for line, cells in raw_rows:
        if not any(cells.values()):
            continue  # a blank line
        image_cell = cells.get("image", "")
        image = _resolve(path.parent, image_cell) if image_cell else None
        key = image if image is not None else Path(f"<row {line}: no image>")
        case = cases.setdefault(key, Case(image=key))
        case.lines.append(line)
        try:
            row = _parse_row(line, image, cells, path.parent)
            _check_same_case_options(case, row)
            case.rows.append(row)
        except LiteMedSAMError as exc:
            case.errors.append(str(exc))
            problems.append(str(exc))
    if not cases:
        raise LiteMedSAMError(f"{path} has no rows: add one row per box under the header")
    if all(case.errors for case in cases.values()):
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise LiteMedSAMError(f"{path} has no usable row: {shown}")
    return list(cases.values())


def _resolve(folder: Path, cell: str) -> Path:
    """A manifest path: relative paths are relative to the manifest's folder."""
    value = Path(cell).expanduser()
    return (value if value.is_absolute() else folder / value).resolve()


def _parse_row(line: int, image: Path | None, cells: dict[str, str], folder: Path) -> ManifestRow:
    from ..presets import PRESETS
    from ..registry import available_models

    where = f"row {line}"
    if image is None:
        raise LiteMedSAMError(f"{where}: the 'image' cell is empty")
    if not image.exists():
        raise LiteMedSAMError(f"{where}: image not found: {image}")
    given = [c for c in BOX_COLUMNS if cells.get(c)]
    if len(given) != 1:
        what = "no box" if not given else "both " + " and ".join(f"'{c}'" for c in given)
        raise LiteMedSAMError(f"{where}: {what}; give exactly one of 'box', 'box_mm' or 'roi' per row")
    kind = given[0]
    text = cells[kind]
    if kind == "roi":
        value = _resolve(folder, text)
        if not value.is_file():
            raise LiteMedSAMError(f"{where}: ROI file not found: {value}")
    else:
        value = _six_numbers(text, where, kind)
    preset, model = cells.get("preset") or None, cells.get("model") or None
    if preset is not None and preset not in PRESETS:
        raise LiteMedSAMError(f"{where}: unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if model is not None and model not in available_models():
        raise LiteMedSAMError(f"{where}: unknown model {model!r}; available models: "
                              f"{', '.join(sorted(available_models()))}")
    return ManifestRow(line, image, kind, value, cells.get("name") or None, preset, model)


def _six_numbers(text: str, where: str, kind: str) -> tuple[float, ...]:
    what = ("six voxel indices x0 y0 z0 x1 y1 z1" if kind == "box"
            else "six LPS millimetre values x y z x y z (two opposite corners)")
    try:
        numbers = tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        numbers = ()
    if len(numbers) != 6 or not all(math.isfinite(v) for v in numbers):
        raise LiteMedSAMError(f"{where}: '{kind}' must be {what} separated by spaces, got {text!r}")
    if kind == "box":
        if not all(v.is_integer() for v in numbers):
            raise LiteMedSAMError(f"{where}: 'box' takes whole voxel indices, got {text!r}")
        if any(v < 0 for v in numbers) or any(numbers[i] > numbers[i + 3] for i in range(3)):
            raise LiteMedSAMError(f"{where}: 'box' {text!r} is not x0 y0 z0 x1 y1 z1 with 0 <= x0 <= x1, "
                                  "y0 <= y1, z0 <= z1")
        numbers = tuple(int(v) for v in numbers)
    return numbers


def _check_same_case_options(case: Case, row: ManifestRow) -> None:
    """Rows of one image are one run: their preset and model must agree."""
    for option in ("preset", "model"):
        mine, theirs = getattr(row, option), getattr(case, option)
        if mine and theirs and mine != theirs:
            first = next(r.line for r in case.rows if getattr(r, option))
            raise LiteMedSAMError(f"row {row.line}: {option} {mine!r} differs from row {first}'s {theirs!r} "
                                  "for the same image; the rows of one image are segmented together")


# ------------------------------------------------------------------------------ outputs
def image_stem(image: Path) -> str:
    """``ct`` for ``ct.nii.gz`` / ``ct.nrrd``; a DICOM folder's own name."""
    name = image.name
    if image.is_dir():
        return name
    for suffix in _DOUBLE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem or name


def assign_outputs(cases: list[Case], outdir: Path) -> list[str]:
    """Set each case's ``output`` to ``OUTDIR/<stem>.seg.nrrd``; a name already taken (two
    images with the same stem, compared ignoring case, or an input file) gets ``_2``, ``_3``...
    in manifest order. Returns one message per renamed case."""
    taken = {str(c.image).lower() for c in cases}
    used: set[str] = set()
    notes = []
    for case in cases:
        stem = image_stem(case.image)
        candidate, n = stem, 1
        while True:
            path = outdir / f"{candidate}{OUTPUT_SUFFIX}"
            key = path.name.lower()
            if key not in used and str(path.resolve()).lower() not in taken:
                break
            n += 1
            candidate = f"{stem}_{n}"
        used.add(key)
        case.output = path
        if n > 1:
            notes.append(f"{case.where} ({case.image}): {stem}{OUTPUT_SUFFIX} is taken, writing {path.name}")
    return notes


# ------------------------------------------------------------------------------ fingerprint
def _file_identity(path: Path) -> list:
    """What says a file (or each file of a DICOM folder) is unchanged: size and modification time."""
    if path.is_dir():
        return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(path.iterdir()) if p.is_file()]
    stat = path.stat()
    return [str(path), stat.st_size, stat.st_mtime_ns]


def fingerprint(case: Case, options: dict) -> str:
    """SHA-256 over the case's inputs (image and ROI files: path, size, modification time),
    its rows and the run's options (model, weights, mode, preset, window, pipeline options):
    a case is skipped on a re-run only when this is unchanged."""
    try:
        inputs = [_file_identity(case.image)]
        inputs += [_file_identity(r.value) for r in case.rows if r.kind == "roi"]
    except OSError as exc:
        inputs = [f"unreadable: {exc}"]
    record = {"version": FINGERPRINT_VERSION, "inputs": inputs,
              "rows": [[r.kind, str(r.value), r.name] for r in case.rows],
              "preset": case.preset, "model": case.model, "output": case.output.name if case.output else None,
              "options": options}
    text = json.dumps(record, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()
