"""The rule of the box-contact study (tools/study_box_contact.py, not shipped): a mask lying
along its box's side or filling its end slice, on synthetic balls where the answer is known."""

from __future__ import annotations

import numpy as np
from tool_module import load_tool

from LiteMedSAMLib.boxes import Box3D, SliceBox

study = load_tool("study_box_contact")
BoxContact, box_contact, clip = study.BoxContact, study.box_contact, study.clipped


def ball(shape=(40, 100, 100), centre=(20, 50, 50), radius=(12, 20, 20)) -> np.ndarray:
    z, y, x = np.ogrid[:shape[0], :shape[1], :shape[2]]
    return ((((z - centre[0]) / radius[0]) ** 2 + ((y - centre[1]) / radius[1]) ** 2
             + ((x - centre[2]) / radius[2]) ** 2) <= 1).astype(np.uint8)


def test_a_box_around_the_whole_object_gives_no_hint():
    mask = ball()
    fitting = Box3D.from_mask(mask)
    assert box_contact(mask, fitting) == BoxContact()
    assert not box_contact(mask, fitting)
    # a looser box, too
    assert not box_contact(mask, Box3D(20, 20, 5, 80, 80, 35))


def test_a_side_that_cuts_the_object_is_found_on_the_slices_it_cuts():
    mask = ball()
    cut = Box3D(30, 30, 8, 60, 70, 32)  # x1 = 60 cuts the ball (x 30..70) short of its right part
    contact = box_contact(clip(mask, cut), cut)
    assert contact.side_slices and not contact.cut_below and not contact.cut_above
    # the slices where the ball reaches past x = 60 over at least half the side, not its tips
    assert 20 in contact.side_slices and 8 not in contact.side_slices and 32 not in contact.side_slices


def test_an_end_slice_that_cuts_the_object_is_found():
    mask = ball()
    cut = Box3D(30, 30, 8, 70, 70, 20)  # the ball spans slices 8..32; the box stops at its middle
    contact = box_contact(clip(mask, cut), cut)
    assert contact.cut_above and not contact.cut_below and not contact.side_slices
    below = Box3D(30, 30, 20, 70, 70, 32)
    assert box_contact(clip(mask, below), below).cut_below


def test_the_images_own_border_and_tiny_boxes_are_not_judged():
    mask = ball(centre=(20, 50, 5))  # runs off the image at x = 0
    box = Box3D(0, 30, 8, 25, 70, 32)
    assert not box_contact(clip(mask, box), box).side_slices  # the image cuts it, not the box
    full = np.ones((3, 5, 5), np.uint8)  # a 5-pixel box is covered by any mask
    assert not box_contact(full, Box3D(0, 0, 0, 4, 4, 2)).side_slices
    # an object cut by both ends of the volume: the volume's ends are not the box's
    column = np.zeros((10, 40, 40), np.uint8)
    column[:, 10:30, 10:30] = 1
    assert not box_contact(column, Box3D(5, 5, 0, 34, 34, 9))


def test_a_2d_start_is_judged_on_its_own_slice_and_its_allowed_range():
    mask = ball()
    start = SliceBox(20, 30, 30, 60, 70, z_min=10, z_max=30)
    swept = mask.copy()  # the ball, its start slice cut at x = 60 as the bound cuts it
    swept[20, :, 61:] = 0
    contact = box_contact(swept, start)
    assert contact.side_slices == (20,)  # the other slices may lie anywhere
    assert not contact.cut_below and not contact.cut_above  # the ball tapers inside 10..30
    assert box_contact(mask, SliceBox(20, 30, 30, 70, 70, z_min=12, z_max=24)).cut_above
