"""The README's library example runs as written and gives real masks: what an engineer copies
first must work, with the default's thin-slice levers on (the slice spacing passed)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from LiteMedSAMLib.evaluation.metrics import dice

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_library_example_segments_the_shipped_brain(example, caplog):
    match = re.search(r"<!-- library example[^>]*-->\s*```python\n(.*?)```", README.read_text(), re.S)
    assert match, "no library example in README.md"
    scope: dict = {}
    with caplog.at_level(logging.WARNING, logger="LiteMedSAMLib"):
        exec(compile(match.group(1), "README library example", "exec"), scope)
    assert not [r for r in caplog.records if "slice spacing is unknown" in r.getMessage()]
    _, label, _ = example
    assert scope["image"].GetSpacing()[2] == 1.0 and scope["predictor"].slice_spacing == 1.0
    slab = slice(8, 15)
    for mask, value in ((scope["lobe"], 1), (scope["left"], 1), (scope["right"], 2)):
        assert mask.shape == label.shape and not mask[:8].any() and not mask[15:].any()  # the box's slices
        assert dice(mask[slab], label[slab] == value) > 0.7
    # the 2D start on slice 12 follows the cerebellum up and down from there
    cerebellum = scope["cerebellum"]
    assert cerebellum[12].any() and cerebellum[5].any() and cerebellum[18].any()
    assert dice(cerebellum[:21], label[:21] == 3) > 0.5
    result = scope["result"]
    assert result.mask.shape == label.shape[1:] and result.mask.sum() > 200
    assert np.all(scope["left"] == scope["lobe"])  # the same box, pipeline and spacing: the same mask
