"""The converted-model cache (``openvino_backend.cached_model``) under faults: a corrupt or
truncated entry, two processes converting at once, a read-only folder.

Real OpenVINO conversions of a tiny torch module (well under a second each) stand in for the
~25 s conversion of the encoder: the cache layer does not care what it stores.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ov = pytest.importorskip("openvino")

from LiteMedSAMLib.backends.openvino_backend import cached_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

# A child process: convert the tiny model into the cache entry argv[1] (after waiting for the
# file argv[2], so that two children start converting at the same moment) and print what happened.
CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import numpy as np, torch, openvino as ov
    from LiteMedSAMLib.backends.openvino_backend import cached_model

    def convert():
        time.sleep(1.0)  # widen the window in which both children convert
        layer = torch.nn.Linear(4, 3)
        with torch.no_grad():
            layer.weight.copy_(torch.arange(12.0).reshape(3, 4))
            layer.bias.fill_(1.0)
        return ov.convert_model(layer, example_input=torch.zeros(1, 4))

    go = Path(sys.argv[2])
    while not go.exists():
        time.sleep(0.01)
    model, converted = cached_model(Path(sys.argv[1]), convert)
    out = ov.Core().compile_model(model, "CPU")(np.ones((1, 4), np.float32))[0]
    print("converted" if converted else "loaded", *out.ravel().tolist())
""")
EXPECTED = [7.0, 23.0, 39.0]  # weight rows 0..3, 4..7, 8..11 summed, plus the bias


def _tiny_model():
    import torch

    layer = torch.nn.Linear(4, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.arange(12.0).reshape(3, 4))
        layer.bias.fill_(1.0)
    return ov.convert_model(layer, example_input=torch.zeros(1, 4))


def _run(model) -> list[float]:
    return ov.Core().compile_model(model, "CPU")(np.ones((1, 4), np.float32))[0].ravel().tolist()


def test_a_corrupt_or_truncated_entry_is_rebuilt_with_a_log_line(tmp_path, caplog):
    xml = tmp_path / "tiny.xml"
    model, converted = cached_model(xml, _tiny_model)
    assert converted and _run(model) == EXPECTED
    assert cached_model(xml, _tiny_model)[1] is False  # cached: loaded, not converted
    for damage in ("truncate", "garble"):
        binary = xml.with_suffix(".bin")
        data = binary.read_bytes()
        binary.write_bytes(data[: len(data) // 2] if damage == "truncate" else data[::-1])
        caplog.clear()
        with caplog.at_level("WARNING"):
            model, converted = cached_model(xml, _tiny_model)
        assert converted and _run(model) == EXPECTED
        assert any("corrupt or incomplete" in r.message and "rebuilding" in r.message for r in caplog.records)
        assert binary.read_bytes() == data  # the entry is whole again
        model, converted = cached_model(xml, _tiny_model)
        assert not converted and _run(model) == EXPECTED


def test_two_processes_converting_at_once_both_succeed(tmp_path):
    xml, go = tmp_path / "cache" / "tiny.xml", tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    children = [subprocess.Popen([sys.executable, "-c", CHILD, str(xml), str(go)], cwd=ROOT, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    go.touch()
    results = [child.communicate(timeout=300) for child in children]
    assert [child.returncode for child in children] == [0, 0], [err for _, err in results]
    words = sorted(out.split()[0] for out, _ in results)
    assert words == ["converted", "loaded"]  # the second waited for the first and loaded its entry
    for out, _ in results:
        assert [float(v) for v in out.split()[1:]] == EXPECTED
    model, converted = cached_model(xml, _tiny_model)
    assert not converted and _run(model) == EXPECTED
    assert not [p.name for p in xml.parent.iterdir() if ".tmp" in p.name]  # no leftovers


def test_a_read_only_cache_folder_runs_without_caching_and_warns(tmp_path):
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    # root ignores file modes: run the child without CAP_DAC_OVERRIDE then, so that they apply
    prefix = []
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: cannot make a folder read-only")
        prefix = ["setpriv", "--bounding-set", "-dac_override"]
    code = CHILD.replace("go = Path(sys.argv[2])", "go = Path(sys.argv[1]).parent")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    done = subprocess.run([*prefix, sys.executable, "-c", code, str(folder / "tiny.xml")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "converted"
    assert [float(v) for v in done.stdout.split()[1:]] == EXPECTED
    assert "not writable" in done.stderr and "without caching" in done.stderr
    assert list(folder.iterdir()) == []
