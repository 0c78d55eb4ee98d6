"""Query-oriented keyframe search, in modules that follow the pipeline (ideas from T*, QuoTA, BOLT and
AKS; our own code). Pure functions over arrays (numpy only, no models):

- ``decompose``: the question -> sub-queries (what must be seen), rule-based or by a language model;
- ``scores``: per-sub-query normalisation, fusion, priors from the text channels;
- ``select``: distinct peaks, zoom ranges, keyframe selection, per-frame pixel budgets;
- ``driver``: the coarse-to-fine search that ties them (``keyframe_search``) and moment extents.
``textsearch`` (the timed text: FTS5 + sentence vectors) needs the store and is imported on its own.

The names below are the package's API: ``from pipelines import search`` then ``search.keyframe_search``.
"""

from pipelines.search.decompose import (
    ROLE_WEIGHTS,
    ROLES,
    SubQuery,
    caption_form,
    decompose_question,
    decompose_with_llm,
    embed_subqueries,
)
from pipelines.search.driver import (
    Densify,
    Keyframe,
    SearchParams,
    SearchResult,
    keyframe_search,
    peak_extent,
    unseen_scene_ranges,
    visual_moments,
)
from pipelines.search.scores import Normalizer, apply_priors, fuse_scores
from pipelines.search.select import (
    first_frames,
    frame_budgets,
    merge_ranges,
    sampling_interval,
    scene_ids,
    select_keyframes,
    zoom_ranges,
)

__all__ = [
    "ROLES", "ROLE_WEIGHTS", "Densify", "Keyframe", "Normalizer", "SearchParams", "SearchResult", "SubQuery",
    "apply_priors", "caption_form", "decompose_question", "decompose_with_llm", "embed_subqueries", "first_frames", "frame_budgets", "fuse_scores",
    "keyframe_search", "merge_ranges", "peak_extent", "sampling_interval", "scene_ids", "select_keyframes",
    "unseen_scene_ranges", "visual_moments", "zoom_ranges",
]
