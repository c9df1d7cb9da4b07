"""The mask clean-up study's rules (tools/study_mask_cleanup.py, #11) on small masks."""

from __future__ import annotations

import numpy as np
from tool_module import load_tool

study = load_tool("study_mask_cleanup")


def test_the_rules_keep_the_largest_piece_and_fill_holes():
    mask = np.zeros((3, 12, 12), bool)
    mask[:, 2:8, 2:8] = True
    mask[1, 4, 4] = False              # a hole on the middle slice
    mask[0, 10:12, 10:12] = True       # a stray piece, apart in 3D
    mask[2, 0, 11] = True              # another, one voxel
    big = study.largest_component(mask)
    assert big.sum() == 3 * 36 - 1 and not big[0, 10, 10] and not big[2, 0, 11]
    filled = study.fill_slices(mask)
    assert filled[1, 4, 4] and filled[0, 10, 10]
    both = study.RULES["both"](mask)
    assert both.sum() == 3 * 36
    # per slice: each slice keeps its largest piece (a strip beside the object goes; column 8 is empty)
    strip = mask.copy()
    strip[1, 2:8, 9] = True
    per_slice = study.largest_per_slice(strip)
    assert not per_slice[1, 2:8, 9].any() and per_slice[1, 2, 2] and not per_slice[0, 10, 10]
    assert study.RULES["as is"](mask) is mask
    # a 2-D mask: full connectivity in its own rank
    flat = np.zeros((6, 6), bool)
    flat[0, 0] = flat[1, 1] = flat[4, 4] = True
    assert study.largest_component(flat).sum() == 2
