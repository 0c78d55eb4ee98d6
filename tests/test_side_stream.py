"""One decode, two streams: the sampled frames every stage reads, and every frame of the source (small)
for the cut refinement, which therefore reads nothing again from the file."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.stages.media import SideStream, decode, even_size, picked_frame, picked_rgb, probe
from pipelines.stages.seek import frames_between
from pipelines.stages.segment import FINE_WIDTH, SceneParams, SceneSegmenter
from tests.synth import make_scenes_video


def test_side_stream_is_every_frame_and_leaves_the_sampled_frames_as_they_were(tmp_path):
    path = str(tmp_path / "cuts.mp4")
    make_scenes_video(path, [2.04, 1.52, 2.6], rate=25, audio=False, sources=["testsrc2", "cellauto", "smptebars"])
    info = probe(path)
    plain = list(decode(path, fps=10, width=320, info=info))
    fine: list = []
    both = list(decode(path, fps=10, width=320, info=info, side=SideStream(FINE_WIDTH, lambda t, f: fine.append((t, f)))))
    assert [t for t, _ in both] == [t for t, _ in plain]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(both, plain))
    # every source frame once, in order, at the source's own times (25 fps), small
    every = list(decode(path, fps=1000, width=FINE_WIDTH, info=info))  # capped at the source's rate
    assert len(fine) == len(every) == round(info.duration * 25)
    assert np.allclose([t for t, _ in fine], [t for t, _ in every], atol=1e-6)
    w, h = even_size(info, FINE_WIDTH)
    assert fine[0][1].shape == picked_frame(w, h) and fine[0][1].dtype == np.uint8  # I420 planes, picked
    # the same picture as an area-averaged RGB frame, not the same pixels
    rgb = picked_rgb(fine[0][1])
    assert rgb.shape == (h, w, 3) and 0 < np.abs(rgb.astype(int) - every[0][1].astype(int)).mean() < 20
    # the very frames a cut window read again from the file shows, at the same times, only picked, not
    # averaged: the same picture (smptebars, from 3.56 s), and on a noise-like source (cellauto) the same
    # brightness, not the same noise
    again = frames_between(path, 2.9, 3.6, w=w, h=h)
    side = [(t, f) for t, f in fine if again[0][0] - 1e-6 <= t <= again[-1][0] + 1e-6]
    assert [t for t, _ in side] == pytest.approx([t for t, _ in again])
    pairs = [(t, picked_rgb(a).astype(int), b.astype(int)) for (t, a), (_, b) in zip(side, again)]
    assert all(abs(a.mean() - b.mean()) < 10 for _, a, b in pairs)
    assert all(np.abs(a - b).mean() < 12 for t, a, b in pairs if t >= 3.56 - 1e-6)


def _refined_cuts(path: str, info, with_side: bool) -> tuple[list[float], int]:
    """Cut times as `vqa index` finds them, windows refined from the decode's side stream or (without it)
    read again from the file; and how many windows were read again."""
    seg = SceneSegmenter(SceneParams(), source=path)
    side = SideStream(FINE_WIDTH, seg.fine) if with_side else None
    for t, f in decode(path, fps=SceneParams().fps, width=384, info=info, side=side):
        seg.feed(t, f)
    return [s.start for s in seg.finish(info.duration)[1:]], seg.reread


def test_cuts_refined_from_the_decode_equal_those_read_again(tmp_path):
    path = str(tmp_path / "cuts.mp4")
    cuts = make_scenes_video(path, [2.04, 1.52, 2.6, 1.96], rate=25, audio=False, labels=False,
                             sources=["testsrc2", "cellauto", "mandelbrot", "smptebars"])  # a noise-like shot too
    info = probe(path)
    found, reread = _refined_cuts(path, info, True)
    again, reread_again = _refined_cuts(path, info, False)
    assert reread == 0 and reread_again == len(cuts)  # no window read twice; without it, one read per cut
    assert found == again
    # on the first frame of each new shot (cut times are multiples of the 25 fps frame time)
    assert np.allclose(found, cuts, atol=0.5 / 25)


def test_hd_side_stream_is_picked_and_finds_the_same_cuts(tmp_path):
    """From an HD source the every-frame side stream picks the source's pixels (averaging every pixel of
    every frame cost a third of the decode): its frames are near the area average, not equal to it, and the
    cuts refined from them are the very cuts that windows read again give, on the first frame of each new
    shot; the grid for the scene analysis picks a grid of pixels and averages those (``small_scale``)."""
    from pipelines.stages.media import SIDE_PICK, small_scale

    path = str(tmp_path / "hd.mp4")
    cuts = make_scenes_video(path, [2.04, 1.52, 2.6, 1.96], size="1280x720", rate=25, audio=False, labels=False,
                             sources=["testsrc2", "cellauto", "mandelbrot", "smptebars"])
    info = probe(path)
    assert info.width >= SIDE_PICK * 128 and "neighbor" in small_scale(info, 128, 72)
    fine: list = []
    list(decode(path, fps=1, width=320, info=info, side=SideStream(FINE_WIDTH, lambda t, f: fine.append((t, f)))))
    w, h = even_size(info, FINE_WIDTH)
    area = frames_between(path, 0.5, 1.0, w=w, h=h)  # random access: every pixel averaged
    side = [picked_rgb(f) for t, f in fine if area[0][0] - 1e-6 <= t <= area[-1][0] + 1e-6]
    assert len(side) == len(area)
    diff = [np.abs(a.astype(int) - b[1].astype(int)).mean() for a, b in zip(side, area)]
    assert 0 < max(diff) < 20  # not the same pixels, the same picture
    (found, reread), (again, reread_again) = _refined_cuts(path, info, True), _refined_cuts(path, info, False)
    assert reread == 0 and reread_again == len(cuts) and found == again
    assert np.allclose(found, cuts, atol=0.5 / 25)


def test_grid_of_the_side_stream_is_a_decode_at_that_rate_only_small(tmp_path):
    """The scene analysis reads the side stream's grid (``SideStream.fps``/``sampled``): the very frames and
    times a decode at that rate and width gives, handed in time order with every frame, each grid frame
    after the sampled frames up to its time."""
    path = str(tmp_path / "cuts.mp4")
    make_scenes_video(path, [2.04, 1.52, 2.6], rate=25, audio=False, sources=["testsrc2", "cellauto", "smptebars"])
    info = probe(path)
    events: list = []
    side = SideStream(128, lambda t, f: events.append(("fine", t, f)), fps=10,
                      sampled=lambda t, f: events.append(("grid", t, f)), feed_width=FINE_WIDTH)
    main = [(t, f) for t, f in decode(path, fps=1, width=320, info=info, side=side) if not events.append(("main", t, f))]
    assert [t for t, _ in main] == [t for t, _ in decode(path, fps=1, width=320, info=info)]
    grid = [(t, f) for k, t, f in events if k == "grid"]
    plain = list(decode(path, fps=10, width=128, info=info))
    assert [t for t, _ in grid] == [t for t, _ in plain] and len(grid) == round(info.duration * 10)
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(grid, plain))
    assert len([k for k, _, _ in events if k == "fine"]) == round(info.duration * 25)
    # order: a grid frame at g comes after every sampled frame at or before g
    seen_main = -1.0
    for kind, t, _ in events:
        if kind == "main":
            seen_main = t
        elif kind == "grid":
            assert all(m <= seen_main for m, _ in main if m <= t)
    # the grid alone (no every-frame stream): the same frames
    alone: list = []
    list(decode(path, fps=1, width=320, info=info, side=SideStream(128, None, fps=10,
                                                                  sampled=lambda t, f: alone.append((t, f)))))
    assert [t for t, _ in alone] == [t for t, _ in plain]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(alone, plain))


def test_every_scene_gets_a_middle_frame_of_its_own_also_when_shorter_than_the_sampling_step(tmp_path):
    """As `vqa index` feeds it: the scene analysis on the side stream's grid, candidate middle frames from
    the 1 fps sampled stream; a scene no sampled frame falls in (2.2-2.9 s) gets its middle read from the
    file, a picture of that scene."""
    from pipelines.stages.segment import KEEP_FPS
    from pipelines.stages.stills import to_jpeg

    path = str(tmp_path / "short.mp4")
    cuts = make_scenes_video(path, [2.2, 0.7, 2.1], rate=25, audio=False, labels=False,
                             sources=["smptebars", "color=c=red", "testsrc2"])
    info = probe(path)
    seg = SceneSegmenter(SceneParams(), source=path)
    side = SideStream(SceneParams().width, seg.fine, fps=SceneParams().fps, sampled=seg.analyse,
                      feed_width=FINE_WIDTH)
    for t, f in decode(path, fps=KEEP_FPS, width=384, info=info, side=side):
        seg.keep(t, f)
    scenes = seg.finish(info.duration)
    assert np.allclose([s.start for s in scenes[1:]], cuts, atol=0.5 / 25)
    assert all(s.rep_jpeg and s.start <= s.rep_t < s.end for s in scenes)
    from io import BytesIO

    from PIL import Image

    red = np.asarray(Image.open(BytesIO(scenes[1].rep_jpeg)).convert("RGB")).reshape(-1, 3).mean(0)
    assert red[0] > 200 and red[1] < 60 and red[2] < 60
    assert to_jpeg is not None
