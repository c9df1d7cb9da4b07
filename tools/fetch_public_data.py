"""Fetch public labelled images into a cache folder and write the evaluation suite's index.

Usage::

    python tools/fetch_public_data.py [--cache DIR] [--downloads DIR] [--force]

The data comes only from package registries, through their clients where they can (no other
web downloads), see ``../shared/notes/public-data.md``:

- ``pip download --no-deps --no-binary :all: totalsegmentator==2.18.0``: the source package's
  ``tests/reference_files`` (CT, MR, aorta CT, a DICOM CT) with TotalSegmentator's own masks.
  These masks are a strong model's *output* kept as regression references, not manual truth:
  every case built from them carries ``labels_are_model_output: true``.
- ``apt-get download mricron-data`` + ``dpkg -x``: the Colin27 T1 with the AAL atlas, and the
  INIA19 rhesus T1 with its NeuroMaps atlas.
- ``pip download --no-deps stardist==0.9.2``: fluorescence nuclei, 2-D and 3-D, with manual
  instance masks.
- pyradiomics 3.1.0's source package (from PyPI's simple index, the registry pip reads, checked
  against its SHA-256: ``pip download`` cannot fetch it, its metadata build fails): the test
  cases of ``data/``, two brain MR, a breast MR and two lung CT, each with one lesion mask.
- The MNI152 crop shipped with this library (``LiteMedSAMLib/data``, from nilearn's bundled
  template) with its reference label.

Each case becomes ``<cache>/<case id>/image.nii.gz`` + ``label.nii.gz`` (integer labels on the
image's own grid) + ``case.json``; ``<cache>/index.json`` lists all cases (dataset, modality,
dimension, split, label value -> name, source, license, ``labels_are_model_output``) and is
written last, atomically, so a reader never sees a half-built suite. Overlay previews of every
case go to ``<cache>/previews/`` for checking the alignment by eye.

``--downloads DIR`` reuses already extracted downloads (folders ``totalsegmentator-2.18.0/``,
``mricron/``, ``sd/`` and ``pyradiomics-3.1.0/`` as ``tar xf``, ``dpkg -x`` and ``unzip`` leave them); whatever is
missing there is fetched into ``<cache>/downloads``. Cases already built are skipped unless
``--force``.

The split is by subject (see ``SPLIT_RULE``): volumes of one subject never sit in both splits.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TS_VERSION = "2.18.0"
STARDIST_VERSION = "0.9.2"
RADIOMICS_VERSION = "3.1.0"
RADIOMICS_SHA256 = "24722c962a6bbd09bc39c1c67dbffe92435f9692a421fabaae8a6b4511eb48e4"
RADIOMICS_CASES = {  # case -> (modality, what its label marks)
    "brain1": ("MR", "brain_lesion"), "brain2": ("MR", "brain_lesion"),
    "breast1": ("MR", "breast_lesion"), "lung1": ("CT", "lung_lesion"), "lung2": ("CT", "lung_lesion"),
}
RADIOMICS_NOTE = ("One lesion mask per image, from pyradiomics' test cases; the package does not say who "
                  "drew them (not a model's output as far as it says). Thick slices (2.1-6.5 mm).")
TS_LICENSE = "Apache-2.0 (TotalSegmentator source package)"
TS_NOTE = ("Labels are TotalSegmentator's own predictions kept as regression references in its "
           "test suite: agreement with a strong model, not manual ground truth.")

SPLIT_RULE = (
    "Split by subject: all volumes of one subject go to the same split. test = the "
    "TotalSegmentator CT example subject (example_ct_sm is the last 30 slices of example_ct, "
    "correlation 1.0; the spine-report masks label example_ct), the TotalSegmentator MR example, "
    "the shipped MNI152 example, Colin27 with AAL, stardist 2-D nuclei, the five pyradiomics lesion "
    "cases (two brain MR, a breast MR, two lung CT; five patients). train = the aorta-report "
    "CT subject (its pulmonary-report crop is the same scan), the DICOM CT, the INIA19 rhesus "
    "template, stardist 3-D nuclei. The aorta CT and the DICOM CT are taken as other patients "
    "than the CT example: the aorta CT covers a physically disjoint z range at 1.5 mm with a "
    "coronal bone-projection correlation of only 0.33 against it, and its T12 vertebra is "
    "32.5 ml against 47.9 ml; the DICOM CT (0.98 mm, 20 slices of 2 mm) holds 249 ml of spleen "
    "and 699 ml of liver in a 40 mm slab, while the CT example's whole spleen is 255 ml over "
    "90 mm, so the organs are not the same. The atlases and templates are each one subject."
)

# Colin27 AAL regions kept: compact deep structures a box describes well, and a few cortical
# regions (names and values from aal.nii.txt).
AAL_KEEP = [
    "Hippocampus_L", "Hippocampus_R", "Amygdala_L", "Amygdala_R", "Caudate_L", "Caudate_R",
    "Putamen_L", "Putamen_R", "Pallidum_L", "Pallidum_R", "Thalamus_L", "Thalamus_R",
    "Insula_L", "Insula_R", "Precentral_L", "Calcarine_L", "Cerebelum_Crus1_R",
]

# aorta-report masks pasted into one label map (in this order; later masks only fill
# background). Landmark masks (annulus, sinotubular junction, pulmonary start points) and the
# lumen masks, which duplicate the aorta, are left out.
AORTA_MASKS = [
    "aorta", "brachiocephalic_trunk", "common_carotid_artery_left", "subclavian_artery_left",
    "celiac_trunk", "superior_mesenteric_artery", "renal_arteries", "iliac_artery_left",
    "iliac_artery_right", "vertebrae_T12",
]


# ---------------------------------------------------------------------------------------------
# Downloads


def _run(cmd: list[str], cwd: Path) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=cwd, check=True)


class Sources:
    """Where the extracted downloads are; fetches each one on first use."""

    def __init__(self, cache: Path, downloads: Path | None) -> None:
        self.given = downloads
        self.own = cache / "downloads"

    def _existing(self, name: str, probe: str) -> Path | None:
        for base in (self.given, self.own):
            if base is not None and (base / name / probe).exists():
                return base / name
        return None

    def totalsegmentator(self) -> Path:
        name, probe = f"totalsegmentator-{TS_VERSION}", "tests/reference_files/example_ct_sm.nii.gz"
        found = self._existing(name, probe)
        if found:
            return found
        self.own.mkdir(parents=True, exist_ok=True)
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
              f"totalsegmentator=={TS_VERSION}", "-d", str(self.own)], self.own)
        tarball = self.own / f"totalsegmentator-{TS_VERSION}.tar.gz"
        with tarfile.open(tarball) as tar:
            members = [m for m in tar.getmembers()
                       if "/tests/reference_files/" in m.name or m.name.endswith("map_to_binary.py")]
            tar.extractall(self.own, members=members, filter="data")
        return self.own / name

    def mricron(self) -> Path:
        found = self._existing("mricron", "usr/share/mricron/templates/ch2.nii.gz")
        if found:
            return found
        self.own.mkdir(parents=True, exist_ok=True)
        _run(["apt-get", "download", "mricron-data"], self.own)
        deb = sorted(self.own.glob("mricron-data_*.deb"))[-1]
        _run(["dpkg", "-x", str(deb), str(self.own / "mricron")], self.own)
        return self.own / "mricron"

    def stardist(self) -> Path:
        found = self._existing("sd", "stardist/data/images/img2d.tif")
        if found:
            return found
        self.own.mkdir(parents=True, exist_ok=True)
        _run([sys.executable, "-m", "pip", "download", "--no-deps", f"stardist=={STARDIST_VERSION}",
              "-d", str(self.own)], self.own)
        target = self.own / "sd"
        for wheel in self.own.glob(f"stardist-{STARDIST_VERSION}*.whl"):
            with zipfile.ZipFile(wheel) as z:
                z.extractall(target, [n for n in z.namelist() if "/data/images/" in n])
            return target
        for sdist in self.own.glob(f"stardist-{STARDIST_VERSION}*.tar.gz"):
            with tarfile.open(sdist) as tar:
                tar.extractall(self.own, filter="data")
            shutil.copytree(self.own / f"stardist-{STARDIST_VERSION}" / "stardist",
                            target / "stardist", dirs_exist_ok=True)
            return target
        raise SystemExit("pip download stardist gave neither a wheel nor a source package")

    def radiomics(self) -> Path:
        from LiteMedSAMLib.registry import file_sha256

        name = f"pyradiomics-{RADIOMICS_VERSION}"
        found = self._existing(name, "data/lung2_label.nrrd")
        if found:
            return found
        self.own.mkdir(parents=True, exist_ok=True)
        tarball = self.own / f"{name}.tar.gz"
        if not tarball.exists() or file_sha256(tarball) != RADIOMICS_SHA256:
            # pip download cannot fetch it (building its metadata needs numpy and versioneer,
            # then reports version 3.0.1a1), so read the link from PyPI's simple index, as pip does
            index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
            page = urllib.request.urlopen(f"{index}/pyradiomics/", timeout=60).read().decode()
            url = sdist_link(page, f"{name}.tar.gz", RADIOMICS_SHA256)
            print(f"+ download {url}", flush=True)
            with urllib.request.urlopen(url, timeout=300) as response:
                tarball.write_bytes(response.read())
            if file_sha256(tarball) != RADIOMICS_SHA256:
                tarball.unlink()
                raise SystemExit(f"{name}.tar.gz does not have the expected SHA-256 {RADIOMICS_SHA256}")
        with tarfile.open(tarball) as tar:
            members = [m for m in tar.getmembers()
                       if m.name.startswith(f"{name}/data/") and m.name.endswith(".nrrd")
                       or m.name == f"{name}/LICENSE.txt"]
            tar.extractall(self.own, members=members, filter="data")
        return self.own / name


def sdist_link(page: str, filename: str, sha256: str) -> str:
    """The address of ``filename`` on a PEP 503 simple-index ``page`` (its ``href``, relative
    links are not used by PyPI), checked against the SHA-256 the index gives with it."""
    for part in page.split('href="')[1:]:
        link = part.split('"')[0]
        address, _, fragment = link.partition("#")
        if address.rsplit("/", 1)[-1] == filename:
            if fragment and fragment != f"sha256={sha256}":
                raise SystemExit(f"{filename}: the index gives {fragment}, expected sha256={sha256}")
            return address
    raise SystemExit(f"{filename} is not listed on the package's index page")


# ---------------------------------------------------------------------------------------------
# Cases


@dataclass
class Case:
    """One image with its label map and what the index says about it."""

    case_id: str
    dataset: str
    modality: str
    dimension: int
    split: str
    subject: str
    source: str
    license: str
    labels_are_model_output: bool
    build: Callable[[Sources], tuple[sitk.Image, sitk.Image, dict[int, str]]]
    notes: str = ""
    extra: dict = field(default_factory=dict)


def _read(path: Path) -> sitk.Image:
    return sitk.ReadImage(str(path))


def _totalseg_class_map(ts_root: Path, task: str) -> dict[int, str]:
    """The label names of a TotalSegmentator task, read from its map_to_binary.py (no import)."""
    tree = ast.parse((ts_root / "totalsegmentator" / "map_to_binary.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "class_map":
            return {int(k): str(v) for k, v in ast.literal_eval(node.value)[task].items()}
    raise SystemExit("class_map not found in TotalSegmentator's map_to_binary.py")


def _names_present(label: sitk.Image, names: dict[int, str]) -> dict[int, str]:
    present = np.unique(sitk.GetArrayViewFromImage(label))
    missing = [int(v) for v in present if v and int(v) not in names]
    if missing:
        raise SystemExit(f"label values without a name: {missing}")
    return {int(v): names[int(v)] for v in present if v}


def _ts_reference(ts: Path) -> Path:
    return ts / "tests" / "reference_files"


def build_ts_ct(src: Sources):
    ts = src.totalsegmentator()
    image = _read(_ts_reference(ts) / "example_ct_sm.nii.gz")
    label = _read(_ts_reference(ts) / "example_seg.nii.gz")
    return image, label, _names_present(label, _totalseg_class_map(ts, "total"))


def build_ts_ct_spine(src: Sources):
    ts = src.totalsegmentator()
    image = _read(_ts_reference(ts) / "example_ct.nii.gz")
    label = _read(_ts_reference(ts) / "spine_report" / "example_ct_report" / "totalseg.nii.gz")
    return image, label, _names_present(label, _totalseg_class_map(ts, "total"))


def build_ts_mr(src: Sources):
    ts = src.totalsegmentator()
    image = _read(_ts_reference(ts) / "example_mr_sm.nii.gz")
    label = _read(_ts_reference(ts) / "example_seg_mr.nii.gz")
    return image, label, _names_present(label, _totalseg_class_map(ts, "total_mr"))


def _onto(mask: sitk.Image, reference: sitk.Image) -> np.ndarray:
    """A mask resampled (nearest neighbour) onto the reference grid, as a bool array."""
    out = sitk.Resample(mask, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                        sitk.sitkUInt8)
    return sitk.GetArrayFromImage(out) > 0


def build_ts_aorta(src: Sources):
    ref = _ts_reference(src.totalsegmentator())
    image = _read(ref / "aorta_report" / "example_ct.nii.gz")
    models = ref / "aorta_report" / "test_result" / "models"
    masks = [(name, _read(models / f"{name}.nii.gz")) for name in AORTA_MASKS]
    masks.append(("heart", _read(ref / "pulmonary_report" / "models" / "heart.nii.gz")))
    masks.append(("pulmonary_artery",
                  _read(ref / "pulmonary_report" / "models" / "pulmonary_artery.nii.gz")))
    return _paint(image, masks)


def _paint(image: sitk.Image, masks: list[tuple[str, sitk.Image]]):
    """One label map from binary masks on sub-grids of the image; empty masks are dropped."""
    label = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint8)
    names: dict[int, str] = {}
    for name, mask in masks:
        inside = _onto(mask, image)
        expected = int((sitk.GetArrayViewFromImage(mask) > 0).sum())
        if inside.sum() != expected:
            raise SystemExit(f"{name}: {expected} voxels, {int(inside.sum())} after resampling "
                             "onto the image (the mask's grid is not a sub-grid of the image)")
        if not inside.any():
            continue
        value = len(names) + 1
        label[inside & (label == 0)] = value
        names[value] = name
    out = sitk.GetImageFromArray(label)
    out.CopyInformation(image)
    return image, out, names


def build_ts_dicom(src: Sources):
    ts = src.totalsegmentator()
    folder = _ts_reference(ts) / "example_ct_dicom"
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    seg = _read(_ts_reference(ts) / "example_seg_dicom.nii.gz")
    # The mask is stored with its y axis flipped relative to the DICOM series: same voxels,
    # other index order. Nearest-neighbour resampling onto the series must keep every voxel.
    label = sitk.Resample(seg, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    before = np.bincount(sitk.GetArrayViewFromImage(seg).ravel(), minlength=256)
    after = np.bincount(sitk.GetArrayViewFromImage(label).ravel(), minlength=256)
    if not np.array_equal(before, after):
        raise SystemExit("example_seg_dicom does not map voxel for voxel onto the DICOM series")
    return image, label, _names_present(label, _totalseg_class_map(ts, "total"))


def _templates(src: Sources) -> Path:
    return src.mricron() / "usr" / "share" / "mricron" / "templates"


def build_colin27_aal(src: Sources):
    tpl = _templates(src)
    image = _read(tpl / "ch2.nii.gz")
    atlas = _read(tpl / "aal.nii.gz")
    table = {}
    for line in (tpl / "aal.nii.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2:
            table[parts[1]] = int(parts[0])
    values = {table[name]: name for name in AAL_KEEP}
    array = sitk.GetArrayFromImage(atlas)
    array[~np.isin(array, list(values))] = 0
    label = sitk.GetImageFromArray(array.astype(np.uint8))
    label.CopyInformation(atlas)
    return image, label, _names_present(label, values)


def build_inia19(src: Sources):
    tpl = _templates(src)
    image = _read(tpl / "inia19-t1-brain.nii.gz")
    label = sitk.Cast(_read(tpl / "inia19-NeuroMaps.nii.gz"), sitk.sitkUInt16)
    values = np.unique(sitk.GetArrayViewFromImage(label))
    # mricron-data ships no name table for NeuroMaps: the values are the names.
    return image, label, {int(v): f"NeuroMaps_{int(v)}" for v in values if v}


def build_mni152(src: Sources):
    from LiteMedSAMLib.example import EXAMPLE_BOXES, EXAMPLE_IMAGE, EXAMPLE_LABEL
    image, label = _read(EXAMPLE_IMAGE), _read(EXAMPLE_LABEL)
    return image, label, {i + 1: name for i, name in enumerate(EXAMPLE_BOXES)}


def _stardist(src: Sources, kind: str):
    folder = src.stardist() / "stardist" / "data" / "images"
    image = _read(folder / f"img{kind}.tif")
    label = sitk.Cast(_read(folder / f"mask{kind}.tif"), sitk.sitkUInt16)
    values = np.unique(sitk.GetArrayViewFromImage(label))
    return image, label, {int(v): f"nucleus_{int(v)}" for v in values if v}


def _radiomics(src: Sources, case: str):
    folder = src.radiomics() / "data"
    image = _read(folder / f"{case}_image.nrrd")
    label = sitk.Cast(_read(folder / f"{case}_label.nrrd"), sitk.sitkUInt8)
    return image, label, _names_present(label, {1: RADIOMICS_CASES[case][1]})


CASES = [
    Case("ts_ct_example", "totalseg_ct", "CT", 3, "test", "ts_ct_example",
         f"TotalSegmentator {TS_VERSION} tests/reference_files/example_ct_sm.nii.gz + example_seg.nii.gz",
         TS_LICENSE, True, build_ts_ct, TS_NOTE),
    Case("ts_ct_example_spine", "totalseg_ct_spine", "CT", 3, "test", "ts_ct_example",
         f"TotalSegmentator {TS_VERSION} tests/reference_files/example_ct.nii.gz + "
         "spine_report/example_ct_report/totalseg.nii.gz",
         TS_LICENSE, True, build_ts_ct_spine,
         TS_NOTE + " Same subject as ts_ct_example (the 112-slice volume); vertebrae only."),
    Case("ts_mr_example", "totalseg_mr", "MR", 3, "test", "ts_mr_example",
         f"TotalSegmentator {TS_VERSION} tests/reference_files/example_mr_sm.nii.gz + example_seg_mr.nii.gz",
         TS_LICENSE, True, build_ts_mr, TS_NOTE),
    Case("mni152_example", "mni152", "MR", 3, "test", "mni152_2009a",
         "LiteMedSAMLib/data (crop of nilearn's MNI ICBM 2009a sym T1; tools/make_example_data.py)",
         "MNI template terms (free use with notice), see LiteMedSAMLib/data/README.md", False,
         build_mni152, "Labels derived from the template's brain mask by connected components."),
    Case("colin27_aal", "colin27_aal", "MR", 3, "test", "colin27",
         "Debian mricron-data: templates/ch2.nii.gz + aal.nii.gz (aal.nii.txt names)",
         "BSD-3 (mricron-data); AAL atlas: academic use, do not redistribute", False,
         build_colin27_aal,
         "AAL subset: " + ", ".join(AAL_KEEP) + ". Atlas labels drawn on this brain (manual)."),
    Case("stardist_2d", "stardist_2d", "microscopy", 2, "test", "stardist_2d",
         f"stardist {STARDIST_VERSION} wheel: stardist/data/images/img2d.tif + mask2d.tif",
         "BSD-3-Clause", False, lambda s: _stardist(s, "2d"),
         "Fluorescence nuclei, manual instance masks: one label per nucleus."),
    *[Case(f"radiomics_{case}", f"radiomics_{modality.lower()}", modality, 3, "test", f"radiomics_{case}",
           f"pyradiomics {RADIOMICS_VERSION} source package: data/{case}_image.nrrd + {case}_label.nrrd",
           "BSD-3-Clause (pyradiomics, Harvard Medical School)", False,
           lambda s, case=case: _radiomics(s, case), RADIOMICS_NOTE)
      for case, (modality, _) in RADIOMICS_CASES.items()],
    Case("ts_ct_aorta", "totalseg_ct_aorta", "CT", 3, "train", "ts_ct_aorta",
         f"TotalSegmentator {TS_VERSION} tests/reference_files/aorta_report/example_ct.nii.gz + "
         "aorta_report/test_result/models/*.nii.gz + pulmonary_report/models/{heart,pulmonary_artery}.nii.gz",
         TS_LICENSE, True, build_ts_aorta,
         TS_NOTE + " Masks on crop grids pasted back onto the full CT (exact sub-grids)."),
    Case("ts_ct_dicom", "totalseg_ct_dicom", "CT", 3, "train", "ts_ct_dicom",
         f"TotalSegmentator {TS_VERSION} tests/reference_files/example_ct_dicom/ + example_seg_dicom.nii.gz",
         TS_LICENSE, True, build_ts_dicom, TS_NOTE),
    Case("inia19_neuromaps", "inia19", "MR", 3, "train", "inia19",
         "Debian mricron-data: templates/inia19-t1-brain.nii.gz + inia19-NeuroMaps.nii.gz",
         "BSD-3 (mricron-data); INIA19 / NeuroMaps: see their terms, do not redistribute", False,
         build_inia19, "Rhesus macaque template; NeuroMaps has no name table here, values are names."),
    Case("stardist_3d", "stardist_3d", "microscopy", 3, "train", "stardist_3d",
         f"stardist {STARDIST_VERSION} wheel: stardist/data/images/img3d.tif + mask3d.tif",
         "BSD-3-Clause", False, lambda s: _stardist(s, "3d"),
         "Fluorescence nuclei, manual instance masks: one label per nucleus."),
]


# ---------------------------------------------------------------------------------------------
# Checks and writing


def _require_same_grid(image: sitk.Image, label: sitk.Image, what: str,
                       tolerance: float = 1e-3) -> None:
    problems = []
    if image.GetSize() != label.GetSize():
        problems.append(f"size {image.GetSize()} vs {label.GetSize()}")
    for name in ("Spacing", "Origin", "Direction"):
        a = np.array(getattr(image, f"Get{name}")())
        b = np.array(getattr(label, f"Get{name}")())
        if a.shape != b.shape or not np.allclose(a, b, atol=tolerance):
            problems.append(f"{name.lower()} {a.round(3).tolist()} vs {b.round(3).tolist()}")
    if problems:
        raise SystemExit(f"{what}: label is not on the image grid: " + "; ".join(problems))


def _preview(image: sitk.Image, label: sitk.Image, path: Path) -> None:
    """A PNG of the slice holding most labelled voxels: image in gray, label outlines in colour."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img = sitk.GetArrayFromImage(image).astype(np.float32)
    lab = sitk.GetArrayFromImage(label)
    if img.ndim == 2:
        img, lab = img[None], lab[None]
    z = int(np.argmax((lab > 0).reshape(lab.shape[0], -1).sum(1)))
    lo, hi = np.percentile(img[z], [1, 99])
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(img[z], cmap="gray", vmin=lo, vmax=hi)
    values = np.unique(lab[z])
    values = values[values > 0]
    ax.contour(lab[z] > 0, levels=[0.5], colors="yellow", linewidths=0.6)
    overlay = np.ma.masked_where(lab[z] == 0, lab[z] % 20)
    ax.imshow(overlay, cmap="tab20", alpha=0.35, vmin=0, vmax=19)
    ax.set_title(f"{path.stem}: slice {z}, {len(values)} labels")
    ax.axis("off")
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


def _write_case(case: Case, src: Sources, cache: Path, force: bool) -> dict:
    folder = cache / case.case_id
    meta_path = folder / "case.json"
    if not force and meta_path.exists() and (folder / "image.nii.gz").exists() \
            and (folder / "label.nii.gz").exists():
        print(f"{case.case_id}: already built, skipped")
        return json.loads(meta_path.read_text())
    image, label, names = case.build(src)
    _require_same_grid(image, label, case.case_id)
    if image.GetDimension() != case.dimension:
        raise SystemExit(f"{case.case_id}: expected a {case.dimension}-D image, got "
                         f"{image.GetDimension()}-D")
    counts = np.bincount(sitk.GetArrayViewFromImage(label).ravel().astype(np.int64))
    tmp = cache / f".{case.case_id}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    sitk.WriteImage(image, str(tmp / "image.nii.gz"), useCompression=True)
    sitk.WriteImage(label, str(tmp / "label.nii.gz"), useCompression=True)
    meta = {
        "id": case.case_id, "dataset": case.dataset, "modality": case.modality,
        "dimension": case.dimension, "split": case.split, "subject": case.subject,
        "image": f"{case.case_id}/image.nii.gz", "label": f"{case.case_id}/label.nii.gz",
        "size_xyz": list(image.GetSize()), "spacing_xyz": [round(s, 6) for s in image.GetSpacing()],
        "labels": {str(v): n for v, n in sorted(names.items())},
        "voxels": {str(v): int(counts[v]) for v in sorted(names) if v < len(counts)},
        "source": case.source, "license": case.license,
        "labels_are_model_output": case.labels_are_model_output, "notes": case.notes,
    }
    (tmp / "case.json").write_text(json.dumps(meta, indent=1) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    previews = cache / "previews"
    previews.mkdir(exist_ok=True)
    _preview(image, label, previews / f"{case.case_id}.png")
    print(f"{case.case_id}: {image.GetSize()} {case.modality}, {len(names)} labels, "
          f"split {case.split}")
    return meta


def default_cache() -> Path:
    return Path(os.environ.get("LITEMEDSAM_DATA_DIR", "~/.cache/litemedsam-data")).expanduser()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=None,
                        help="cache folder (default $LITEMEDSAM_DATA_DIR or ~/.cache/litemedsam-data)")
    parser.add_argument("--downloads", type=Path, default=None,
                        help="folder with already extracted downloads to reuse")
    parser.add_argument("--force", action="store_true", help="rebuild cases already built")
    args = parser.parse_args(argv)
    cache = (args.cache or default_cache()).expanduser().resolve()
    cache.mkdir(parents=True, exist_ok=True)
    src = Sources(cache, args.downloads.resolve() if args.downloads else None)
    cases = {}
    for case in CASES:
        cases[case.case_id] = _write_case(case, src, cache, args.force)
    index = {
        "format": 1,
        "created_by": "tools/fetch_public_data.py",
        "split_rule": SPLIT_RULE,
        "model_output_note": TS_NOTE,
        "cases": cases,
    }
    tmp = cache / "index.json.tmp"
    tmp.write_text(json.dumps(index, indent=1) + "\n")
    tmp.replace(cache / "index.json")
    print(f"wrote {cache / 'index.json'}: {len(cases)} cases "
          f"({sum(c['split'] == 'test' for c in cases.values())} test)")


if __name__ == "__main__":
    main()
