"""``litemedsam batch``: a manifest of tiny cases (two-slice crops of the shipped example),
end to end: outputs, summary, resume, bad rows, a full disk, Ctrl-C, SIGKILL, a process pool and
a Dask cluster. Each case encodes two slices."""

from __future__ import annotations

import csv
import errno
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from LiteMedSAMLib.batch import BatchOptions, plan_threads, read_manifest, run_batch
from LiteMedSAMLib.batch.manifest import assign_outputs
from LiteMedSAMLib.boxes import Box3D
from LiteMedSAMLib.cli import main
from LiteMedSAMLib.errors import LiteMedSAMError
from LiteMedSAMLib.example import EXAMPLE_IMAGE
from LiteMedSAMLib.imageio import TEMPORARY_PREFIX, read_label_volume
from LiteMedSAMLib.segmentation import segment_image

ROOT = Path(__file__).resolve().parents[2]
LOBE = "14 79 0 62 130 1"  # the left temporal lobe on both slices of a crop
RIGHT = "96 79 0 144 130 1"  # the right one


def _crop(path: Path, z0: int, nz: int = 2) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.ReadImage(str(EXAMPLE_IMAGE))[:, :, z0:z0 + nz], str(path))
    return path


def _manifest(path: Path, rows: list[dict]) -> Path:
    columns = ["image", "box", "box_mm", "roi", "name", "preset", "model"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
    return path


def _summary(outdir: Path) -> dict[str, dict]:
    with open(outdir / "summary.csv", newline="") as f:
        return {row["output"]: row for row in csv.DictReader(f)}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _no_temporaries(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith((TEMPORARY_PREFIX, ".summary"))]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Three tiny cases: a/ct.nii.gz and b/ct.nii.gz (same stem) and c.nrrd; b has two rows."""
    folder = tmp_path_factory.mktemp("cohort")
    a, b, c = _crop(folder / "a" / "ct.nii.gz", 10), _crop(folder / "b" / "ct.nii.gz", 11), _crop(folder / "c.nrrd", 12)
    image_b = sitk.ReadImage(str(b))
    lo = image_b.TransformIndexToPhysicalPoint((96, 79, 0))
    hi = image_b.TransformIndexToPhysicalPoint((144, 130, 1))
    rows = [{"image": "a/ct.nii.gz", "box": LOBE, "name": "lobe"},
            {"image": "b/ct.nii.gz", "box": LOBE, "name": "lobe"},
            {"image": "c.nrrd", "box": RIGHT},
            {"image": str(b), "box_mm": " ".join(f"{v:.4f}" for v in (*lo, *hi)), "name": "right"}]
    return folder, _manifest(folder / "cohort.csv", rows), (a, b, c)


@pytest.fixture(scope="module")
def reference(cohort, tmp_path_factory):
    """The cohort done in this process with one thread: what the pool and Dask must reproduce."""
    outdir = tmp_path_factory.mktemp("reference")
    report = run_batch(cohort[1], outdir, BatchOptions(preset="mr", threads=1))
    assert report.exit_status == 0
    return {row.output: row.voxel_counts for row in report.rows}, outdir


# ------------------------------------------------------------------------------ manifest
def test_manifest_groups_rows_by_image_and_names_outputs(cohort, tmp_path):
    folder, manifest, (a, b, c) = cohort
    cases = read_manifest(manifest)
    assert [case.image for case in cases] == [a, b, c]  # relative paths from the manifest's folder
    assert [case.lines for case in cases] == [[2], [3, 5], [4]]
    assert [row.kind for row in cases[1].rows] == ["box", "box_mm"]
    notes = assign_outputs(cases, tmp_path)
    assert [case.output.name for case in cases] == ["ct.seg.nrrd", "ct_2.seg.nrrd", "c.seg.nrrd"]
    assert len(notes) == 1 and "ct_2.seg.nrrd" in notes[0] and "rows 3, 5" in notes[0]


def test_manifest_row_errors_name_the_row(tmp_path):
    image = _crop(tmp_path / "img.nrrd", 10)
    roi = tmp_path / "r.mrk.json"
    roi.write_text("{}")
    for i in range(8):
        (tmp_path / f"i{i}.nrrd").write_bytes(image.read_bytes())
    rows = [{"image": "missing.nii.gz", "box": LOBE},
            {"image": "i0.nrrd", "box": "1 2 3"},
            {"image": "i1.nrrd", "box": "1 2 0 5.5 6 1"},
            {"image": "i2.nrrd", "box": LOBE, "model": "nosuchmodel"},
            {"image": "i3.nrrd", "box": LOBE, "preset": "ct-liverish"},
            {"image": "i4.nrrd", "box": LOBE, "roi": "r.mrk.json"},
            {"image": "i5.nrrd", "roi": "nothere.mrk.json"},
            {"image": "i6.nrrd"},
            {"image": "i7.nrrd", "box": LOBE, "preset": "mr"},
            {"image": "i7.nrrd", "box": RIGHT, "preset": "ct"},
            {"image": "img.nrrd", "box": LOBE}]
    cases = read_manifest(_manifest(tmp_path / "m.csv", rows))
    errors = {case.image.name: "; ".join(case.errors) for case in cases}
    assert errors["missing.nii.gz"].startswith("row 2: image not found")
    assert errors["i0.nrrd"].startswith("row 3: 'box' must be six voxel indices")
    assert errors["i1.nrrd"].startswith("row 4: 'box' takes whole voxel indices")
    assert errors["i2.nrrd"].startswith("row 5: unknown model 'nosuchmodel'")
    assert errors["i3.nrrd"].startswith("row 6: unknown preset 'ct-liverish'")
    assert errors["i4.nrrd"].startswith("row 7: both 'box' and 'roi'")
    assert errors["i5.nrrd"].startswith("row 8: ROI file not found")
    assert errors["i6.nrrd"].startswith("row 9: no box")
    assert errors["i7.nrrd"].startswith("row 11: preset 'ct' differs from row 10's 'mr'")
    assert errors["img.nrrd"] == ""


@pytest.mark.parametrize("text, message", [
    ("file,box\na.nii.gz,1 2 3 4 5 6\n", "no 'image' column"),
    ("image,box\n", "has no rows"),
    ("image,box\nnothere.nii.gz,1 2 3 4 5 6\nalso.nii.gz,\n", r"no usable row: row 2: image not found.*row 3"),
])
def test_unusable_manifests_fail_at_once(tmp_path, capsys, text, message):
    manifest = tmp_path / "m.csv"
    manifest.write_text(text)
    assert main(["batch", str(manifest), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("litemedsam: error:") and "Traceback" not in err
    assert pytest.importorskip("re").search(message, err), err
    assert not (tmp_path / "out").exists()


def test_missing_manifest_and_bad_worker_counts(tmp_path, capsys):
    assert main(["batch", str(tmp_path / "none.csv"), "-o", str(tmp_path / "out")]) == 2
    assert "manifest not found" in capsys.readouterr().err
    with pytest.raises(LiteMedSAMError, match="--workers must be at least 1"):
        plan_threads(0, None, 3)


def test_thread_plan_keeps_workers_times_threads_within_the_cores():
    assert plan_threads(1, None, 10, cores=8)[:2] == (1, 8)
    assert plan_threads(2, None, 10, cores=8)[:2] == (2, 4)
    workers, threads, sentence = plan_threads(4, 4, 10, cores=8)
    assert (workers, threads) == (4, 2) and "--threads 4 lowered to 2" in sentence
    workers, threads, sentence = plan_threads(16, None, 10, cores=8)
    assert (workers, threads) == (8, 1) and "16 workers asked, 8 started" in sentence
    assert plan_threads(4, None, 2, cores=8)[:2] == (2, 4)  # no idle processes
    assert plan_threads(3, None, 9, cores=2)[0] * plan_threads(3, None, 9, cores=2)[1] <= 2


# ------------------------------------------------------------------------------ end to end
def test_batch_writes_outputs_summary_and_resumes(cohort, tmp_path, capsys):
    folder, manifest, (a, b, c) = cohort
    bad = _crop(folder / "outside.nrrd", 10)
    rows = list(csv.DictReader(open(manifest)))
    rows += [{"image": "outside.nrrd", "box": "500 500 0 600 600 1"}, {"image": "missing.nrrd", "box": LOBE}]
    manifest = _manifest(folder / "with_bad_rows.csv", rows)
    before = {p: _sha(p) for p in (a, b, c, bad)}
    outdir = tmp_path / "out"
    assert main(["batch", str(manifest), "-o", str(outdir), "--preset", "mr", "-q"]) == 1  # a case failed
    printed = capsys.readouterr()
    assert "5 case(s): 3 done, 2 failed" in printed.out and "ct_2.seg.nrrd" in printed.out
    assert "1 worker x" in printed.err
    summary = _summary(outdir)
    assert [s["status"] for s in summary.values()] == ["done", "done", "done", "failed", "failed"]
    assert summary["outside.seg.nrrd"]["error"].startswith("row 6 (x0=500")
    assert "outside the image" in summary["outside.seg.nrrd"]["error"]
    assert summary["missing.seg.nrrd"]["error"].startswith("row 7: image not found")
    assert summary["ct_2.seg.nrrd"]["rows"] == "3, 5" and summary["ct_2.seg.nrrd"]["segments"] == "lobe;right"
    # the written masks are the library's, and the summary counts their voxels
    labels, _ = read_label_volume(outdir / "ct.seg.nrrd")
    (expected,), _ = segment_image(sitk.ReadImage(str(a)), [Box3D(*map(int, LOBE.split()))], preset="mr")
    np.testing.assert_array_equal(labels > 0, expected > 0)
    assert int(summary["ct.seg.nrrd"]["voxels"]) == int(expected.sum()) > 1000
    seg_b = pytest.importorskip("slicerio").read_segmentation(str(outdir / "ct_2.seg.nrrd"))
    assert [s["name"] for s in seg_b["segments"]] == ["lobe", "right"]
    assert {p: _sha(p) for p in before} == before  # inputs untouched
    assert not (outdir / "outside.seg.nrrd").exists() and _no_temporaries(outdir)

    # a re-run skips what is done and unchanged; a changed input is redone; --force redoes all
    mtimes = {name: (outdir / name).stat().st_mtime_ns for name in ("ct.seg.nrrd", "ct_2.seg.nrrd", "c.seg.nrrd")}
    assert main(["batch", str(manifest), "-o", str(outdir), "--preset", "mr", "-q"]) == 1
    summary = _summary(outdir)
    assert [s["status"] for s in summary.values()][:3] == ["skipped"] * 3
    assert summary["ct.seg.nrrd"]["voxels"] == str(int(expected.sum()))  # kept from the run that did it
    assert {n: (outdir / n).stat().st_mtime_ns for n in mtimes} == mtimes
    os.utime(c, ns=(time.time_ns(), time.time_ns()))
    assert main(["batch", str(manifest), "-o", str(outdir), "--preset", "mr", "-q"]) == 1
    assert [s["status"] for s in _summary(outdir).values()][:3] == ["skipped", "skipped", "done"]
    capsys.readouterr()
    assert main(["batch", str(manifest), "-o", str(outdir), "--preset", "ct", "-q"]) == 1  # other options
    assert [s["status"] for s in _summary(outdir).values()][:3] == ["done"] * 3
    assert main(["batch", str(manifest), "-o", str(outdir), "--preset", "ct", "--force", "-q"]) == 1
    assert [s["status"] for s in _summary(outdir).values()][:3] == ["done"] * 3


def test_an_output_the_batch_did_not_write_is_kept(cohort, tmp_path):
    outdir = tmp_path / "out"
    outdir.mkdir()
    (outdir / "c.seg.nrrd").write_bytes(b"user data")
    manifest = _manifest(tmp_path / "m.csv", [{"image": str(cohort[2][2]), "box": RIGHT}])
    report = run_batch(manifest, outdir, BatchOptions(preset="mr"))
    assert report.exit_status == 1 and "--force" in report.rows[0].error
    assert (outdir / "c.seg.nrrd").read_bytes() == b"user data"


def test_a_full_disk_fails_that_case_only(cohort, tmp_path, monkeypatch):
    """Writing the first case's output runs out of space half-way: that case fails with a clear
    message and no file; its input is untouched; the next case is written."""
    import slicerio

    real_write = slicerio.write_segmentation

    def write(path, *args, **kwargs):
        if Path(path).name == "ct.seg.nrrd":
            Path(path).write_bytes(b"NRRD0004\n" + b"\0" * 10000)
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_write(path, *args, **kwargs)

    monkeypatch.setattr(slicerio, "write_segmentation", write)
    a, c = cohort[2][0], cohort[2][2]
    manifest = _manifest(tmp_path / "m.csv", [{"image": str(a), "box": LOBE}, {"image": str(c), "box": RIGHT}])
    before = _sha(a)
    outdir = tmp_path / "out"
    report = run_batch(manifest, outdir, BatchOptions(preset="mr"))
    assert [r.status for r in report.rows] == ["failed", "done"] and report.exit_status == 1
    assert "row 2: Could not write" in report.rows[0].error and "no space left" in report.rows[0].error
    assert sorted(p.name for p in outdir.iterdir()) == ["c.seg.nrrd", "summary.csv"]
    assert _sha(a) == before


def _start_batch(manifest: Path, outdir: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "LiteMedSAMLib.cli", "batch", str(manifest), "-o", str(outdir),
                             "--preset", "mr", "-q"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(child: subprocess.Popen, outdir: Path, wanted: dict[str, str]) -> dict[str, str]:
    """Poll the summary until it shows ``wanted`` (or the child ends); returns what it showed."""
    deadline = time.monotonic() + 600
    status: dict[str, str] = {}
    while time.monotonic() < deadline and child.poll() is None:
        try:
            status = {k: v["status"] for k, v in _summary(outdir).items()}
        except (OSError, KeyError):
            status = {}
        if all(status.get(k) == v for k, v in wanted.items()):
            break
        time.sleep(0.05)
    return status


def test_ctrl_c_stops_after_the_current_case_with_a_clean_summary(cohort, tmp_path):
    a, b, c = cohort[2]
    manifest = _manifest(tmp_path / "m.csv", [{"image": str(a), "box": LOBE}, {"image": str(c), "box": RIGHT},
                                              {"image": str(b), "box": LOBE}])
    outdir = tmp_path / "out"
    child = _start_batch(manifest, outdir)
    status = _wait_for(child, outdir, {"ct.seg.nrrd": "running"})
    child.send_signal(signal.SIGINT)  # Ctrl-C during case 1
    out, err = child.communicate(timeout=600)
    assert status.get("ct.seg.nrrd") == "running", err.decode()[-2000:]
    assert child.returncode == 130, err.decode()[-2000:]
    assert "stopped by Ctrl-C" in err.decode()
    assert [r["status"] for r in _summary(outdir).values()] == ["done", "not run", "not run"]  # case 1 finished
    assert sorted(p.name for p in outdir.iterdir()) == ["ct.seg.nrrd", "summary.csv"]
    assert main(["batch", str(manifest), "-o", str(outdir), "--preset", "mr", "-q"]) == 0
    assert [r["status"] for r in _summary(outdir).values()] == ["skipped", "done", "done"]


def test_sigkill_in_the_middle_of_a_case_then_rerun(cohort, tmp_path):
    """Killed while case 2 runs: no partial file; the re-run skips case 1 and does case 2 again."""
    a = cohort[2][0]
    long = _crop(tmp_path / "long.nrrd", 6, nz=8)  # eight slices: long enough to be killed in
    manifest = _manifest(tmp_path / "m.csv", [{"image": str(a), "box": LOBE},
                                              {"image": str(long), "box": "14 79 0 62 130 7"}])
    outdir = tmp_path / "out"
    child = _start_batch(manifest, outdir)
    status = _wait_for(child, outdir, {"ct.seg.nrrd": "done", "long.seg.nrrd": "running"})
    time.sleep(0.5)  # into case 2's slices
    child.kill()
    child.wait()
    assert status == {"ct.seg.nrrd": "done", "long.seg.nrrd": "running"}, child.communicate()[1].decode()[-2000:]
    assert not (outdir / "long.seg.nrrd").exists()
    first = _sha(outdir / "ct.seg.nrrd")
    assert main(["batch", str(manifest), "-o", str(outdir), "--preset", "mr", "-q"]) == 0
    summary = _summary(outdir)
    assert [summary[n]["status"] for n in ("ct.seg.nrrd", "long.seg.nrrd")] == ["skipped", "done"]
    labels, _ = read_label_volume(outdir / "long.seg.nrrd")
    assert labels.shape == (8, 170, 158) and int(summary["long.seg.nrrd"]["voxels"]) == (labels > 0).sum() > 1000
    assert _sha(outdir / "ct.seg.nrrd") == first and _no_temporaries(outdir)


# ------------------------------------------------------------------------------ parallel
def test_two_worker_processes_each_load_the_model_once(cohort, reference, tmp_path):
    expected, _ = reference
    report = run_batch(cohort[1], tmp_path / "out", BatchOptions(preset="mr", threads=1), workers=2)
    assert report.exit_status == 0 and report.plan.startswith("2 workers x 1 thread")
    assert {row.output: row.voxel_counts for row in report.rows} == expected
    assert len(report.loads) == 2 and set(report.loads.values()) == {1}  # two processes, one model each


def test_dask_local_cluster_same_summary_and_resume(cohort, reference, tmp_path):
    distributed = pytest.importorskip("distributed")
    expected, _ = reference
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        options = BatchOptions(preset="mr", threads=1)
        report = run_batch(cohort[1], tmp_path / "out", options, scheduler=cluster.scheduler_address)
        assert report.exit_status == 0 and "Dask cluster" in report.plan
        assert {row.output: row.voxel_counts for row in report.rows} == expected
        assert len(report.loads) == 1 and list(report.loads.values())[0] >= 1
        built = list(report.loads.values())[0]
        again = run_batch(cohort[1], tmp_path / "out", options, scheduler=cluster.scheduler_address)
        assert [r.status for r in again.rows] == ["skipped"] * 3
        # a changed option runs again on the worker, with the model it already holds
        redo = run_batch(cohort[1], tmp_path / "out", options, scheduler=cluster.scheduler_address, force=True)
        assert [r.status for r in redo.rows] == ["done"] * 3 and list(redo.loads.values()) == [built]
