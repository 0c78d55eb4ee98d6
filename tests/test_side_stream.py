"""One decode, two streams: the sampled frames every stage reads, and every frame of the source (small)
for the cut refinement, which therefore reads nothing again from the file."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.stages.media import SideStream, decode, probe
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
    assert fine[0][1].shape[1] == FINE_WIDTH and fine[0][1].dtype == np.uint8
    # the very pixels a cut window read again from the file would give (same scaler), so refining from the
    # side stream decides exactly as reading again did; on a noise-like source (cellauto) too
    h, w = fine[0][1].shape[:2]
    again = frames_between(path, 2.9, 3.6, w=w, h=h)
    side = [(t, f) for t, f in fine if again[0][0] - 1e-6 <= t <= again[-1][0] + 1e-6]
    assert [t for t, _ in side] == pytest.approx([t for t, _ in again])
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(side, again))


def test_cuts_refined_from_the_decode_equal_those_read_again(tmp_path):
    path = str(tmp_path / "cuts.mp4")
    cuts = make_scenes_video(path, [2.04, 1.52, 2.6, 1.96], rate=25, audio=False, labels=False,
                             sources=["testsrc2", "cellauto", "mandelbrot", "smptebars"])  # a noise-like shot too
    info = probe(path)

    def run(with_side: bool) -> tuple[list[float], int]:
        seg = SceneSegmenter(SceneParams(), source=path)
        side = SideStream(FINE_WIDTH, seg.fine) if with_side else None
        for t, f in decode(path, fps=SceneParams().fps, width=384, info=info, side=side):
            seg.feed(t, f)
        return [s.start for s in seg.finish(info.duration)[1:]], seg.reread

    found, reread = run(True)
    again, reread_again = run(False)
    assert reread == 0 and reread_again == len(cuts)  # no window read twice; without it, one read per cut
    assert found == again
    # on the first frame of each new shot (cut times are multiples of the 25 fps frame time)
    assert np.allclose(found, cuts, atol=0.5 / 25)
