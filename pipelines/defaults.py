"""One table of defaults: the CLI options, the library's option dataclasses (``AskOptions``,
``IndexOptions``, ``SearchParams``, ``EvalRunOptions``) and the bench scripts read these names, so a
default is changed here and nowhere else. Plain constants only: importing this module costs nothing.
"""

from __future__ import annotations

# -- indexing --------------------------------------------------------------------------------------
EMBED_FPS = 1.0  # frames per second embedded with CLIP
OCR_FPS = 2.0  # frames per second probed for on-screen text
THUMB_WIDTH = 256  # stored thumbnail width, pixels
MIN_SCENE_LEN = 0.6  # shortest scene, seconds
STILL_MEAN_DIFF = 1.0  # two sampled frames are the same picture (stored once) when their mean absolute
STILL_PIXEL_DIFF = 24  # difference is at most this (0-255) and at most STILL_PIXEL_SHARE of their pixels
STILL_PIXEL_SHARE = 0.001  # differ by more than STILL_PIXEL_DIFF (codec noise passes; a changed detail does not)

# -- keyframe search -------------------------------------------------------------------------------
K = 8  # keyframes per question
ZOOM_ROUNDS = 1  # coarse-to-fine rounds in time (a second round changed no hit nor F1 on 58 tuning items)
ZOOM_RANGES = 4  # time ranges densified per round
ZOOM_FPS = 4.0  # decoding rate inside a zoom range
SEED = 0
MIN_PEAK = 0.5  # fused z-score a frame needs to count as a match (a relevance peak, a close-up)
SEARCH_TOP = 5  # moments `vqa search` prints
MOMENT_SPAN = 1.0  # seconds a visual moment reaches at most from its keyframe (search.peak_extent)
MOMENT_BAND = 0.4  # a visual moment is a result when its score reaches this share of the best one's height

# CLIP's prompt ensembling (Radford et al. 2021): a target or cue phrase is embedded in each of these
# captions and the normalised embeddings averaged (open_clip's SIMPLE_IMAGENET_TEMPLATES); () embeds it
# as it is
PROMPT_TEMPLATES = ("itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
                    "a {} in a video game.", "art of the {}.", "a photo of the small {}.")

# concentration: a confident peak gets its keyframes before, at and after it (see select.allocate)
PEAK_MARGIN = 0.1  # lead of the best peak over the runner-up, as a share of its height, for full confidence
RIVAL_BAND = 0.4  # a peak within this share of the best one's height keeps a keyframe (None: 2 PEAK_MARGIN)
CONTEXT_SPACING = 0.25  # seconds between the keyframes around a confident peak

# spatial zoom: regions of the frames that matter (see search.regions)
REGION_FRAMES = 4  # frames per question whose windows are cropped before the zoom, besides those the index holds
REGION_GRID = (2,)  # grids scored per frame: g overlapping square windows across the short side
REGION_OVERLAP = 0.5  # share of a cell that overlaps its neighbour
REGION_PROPOSALS = 3  # windows per frame around what stands out from its background (regions.content_boxes)
REGION_PENALTY = 0.0  # fused z a window's score gives up against whole frames
REGION_CALIBRATE = False  # windows brought to their frames' scale (median shift) before they compete
REGION_SHOTS = 1.0  # share of REGION_FRAMES given to the best frame of each shot (the rest: best frames)
REGION_ZOOM = 1  # best new frames of each shot in each zoom range whose windows are scored
REGION_ZOOM_MAX = 0  # of those, at most this many per zoom round, best whole-frame scores first (0: all)
HEAD_MIN = 0.25  # seconds of a shot's head before its first index frame for it to be probed (SHOT_HEADS)
SHOT_HEADS = True  # zoom round 1 also decodes each shot's head before its first index frame (hidden short shots)
REGION_HELD = True  # the index embeds the windows of each shot's first frame; every question scores them
REGION_NORM = "windows"  # windows z-scored with the index frames' statistics ("frames") or their own ("windows")

# -- answering -------------------------------------------------------------------------------------
FRAME_WIDTH = 448  # width of the frames given to the answerer (before per-frame budgets)
FRAME_PIXELS = 448 * 252  # mean pixel budget per frame (QuoTA budgets share K times this)
CLOSEUPS = 2  # keyframes whose matching region the answerer also gets as a close-up (see pipelines.closeups)
CONTEXT_LINES = 12  # timed lines of speech / screen text / captions given as context
MAX_NEW_TOKENS = 64

# -- evaluation ------------------------------------------------------------------------------------
DELTA_S = 5.0  # tolerance of the temporal precision / recall, seconds
