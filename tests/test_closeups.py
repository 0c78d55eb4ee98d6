"""Close-ups: the region that lifted a keyframe, read again at the source's resolution and given to the
answerer after the frames, labelled, within the same pixel budget (pipelines.closeups)."""

from __future__ import annotations

import io
import subprocess

import numpy as np
import pytest

from pipelines import search as kf
from pipelines.answerers.base import AnswerRequest
from pipelines.answerers.prompt import frame_labels, top_frames
from pipelines.closeups import answer_images, closeup_rows, closeups
from pipelines.stages.media import ffmpeg_binary, probe, read_frame_at

BOX = (0.75, 0.10, 0.85, 0.30)  # where the red square is, as fractions of the frame


@pytest.fixture(scope="module")
def hd_video(tmp_path_factory):
    """2 s of 1280x720: grey, a small red square at BOX, and at 1 s a green one in the other corner."""
    path = tmp_path_factory.mktemp("closeups") / "hd.mp4"
    x, y, w, h = int(BOX[0] * 1280), int(BOX[1] * 720), int((BOX[2] - BOX[0]) * 1280), int((BOX[3] - BOX[1]) * 720)
    vf = (f"drawbox=x={x + 16}:y={y + 16}:w={w - 32}:h={h - 32}:color=red:t=fill,"
          "drawbox=x=40:y=560:w=80:h=80:color=green:t=fill:enable='gte(t,1)'")
    subprocess.run([ffmpeg_binary(), "-y", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "color=c=gray:s=1280x720:r=25:d=2", "-vf", vf, "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    str(path)], check=True)
    return path


def test_a_closeup_is_the_region_at_the_source_resolution(hd_video):
    info = probe(str(hd_video))
    kfs = [kf.Keyframe(0.5, 1.0, 0), kf.Keyframe(1.2, 3.0, 0, BOX)]
    budgets = [448 * 252, 448 * 252]
    out = closeups(str(hd_video), kfs, budgets, 2, info=info)
    assert [i for i, _ in out] == [1]  # only the keyframe the zoom lifted by a region
    img = np.asarray(out[0][1])
    assert img.shape[:2] == (144, 128)  # the region's own pixels in the 1280x720 source, not upscaled
    full = read_frame_at(str(hd_video), 1.2, width=1280, info=info)
    assert np.array_equal(img, full[72:216, 960:1088])  # the very pixels of the frame a decode shows at 1.2 s
    red = img[40:100, 40:90].reshape(-1, 3).mean(axis=0)
    assert red[0] > 150 and red[1] < 80 and red[2] < 80
    # the frame the answerer gets shows that region with far fewer pixels: 448 wide -> about 45 x 50
    assert img.shape[0] * img.shape[1] > 4 * (0.1 * 448) * (0.2 * 252)


def test_closeups_go_to_the_best_scored_regions_and_only_where_the_source_is_sharper(hd_video, tmp_path):
    info = probe(str(hd_video))
    kfs = [kf.Keyframe(0.2, 1.0, 0, BOX), kf.Keyframe(1.5, 4.0, 0, (0.0, 0.75, 0.1, 0.92)),
           kf.Keyframe(1.8, 2.0, 0, BOX)]
    out = closeups(str(hd_video), kfs, [100_000] * 3, 2, info=info)
    assert [i for i, _ in out] == [1, 2]  # best score first, at most n
    green = np.asarray(out[0][1]).reshape(-1, 3).mean(axis=0)
    assert green[1] > green[0] + 20  # the green square is in that corner from 1 s on
    assert closeups(str(hd_video), kfs, [100_000] * 3, 0) == [] and closeups(None, kfs, [100_000] * 3, 2) == []
    # a window that lifted a frame still below a match's score is no evidence worth a close-up
    weak = kfs + [kf.Keyframe(1.9, 0.2, 0, BOX)]
    assert [i for i, _ in closeups(str(hd_video), weak, [100_000] * 4, 4, info=info)] == [1, 2, 0]
    # a source with no more pixels than the frame the answerer already gets: nothing to gain
    small = tmp_path / "small.mp4"
    subprocess.run([ffmpeg_binary(), "-y", "-hide_banner", "-loglevel", "error", "-i", str(hd_video), "-vf",
                    "scale=320:180", str(small)], check=True)
    assert closeups(str(small), kfs, [448 * 252] * 3, 2) == []


def test_answer_images_share_one_budget_and_label_the_closeups(hd_video):
    from PIL import Image

    kfs = [kf.Keyframe(0.5, 1.0, 0), kf.Keyframe(1.2, 3.0, 0, BOX)]
    frames = [Image.new("RGB", (448, 252)), Image.new("RGB", (448, 252))]
    close = [(1, Image.new("RGB", (128, 144)))]
    total = 2 * 448 * 252
    images, times, budgets, labels = answer_images(frames, kfs, close, total)
    assert len(images) == len(times) == len(budgets) == len(labels) == 3 and images[2] is close[0][1]
    assert times == [0.5, 1.2, 1.2] and sum(budgets) <= total  # the same total, shared three ways
    assert budgets[1] == budgets[2] > budgets[0]  # a close-up counts with its frame's score
    assert labels[0] == "Frame 1 at 0.5 s:" and labels[2].startswith("Close-up of frame 2 at 1.2 s")
    assert answer_images(frames, kfs, [], total)[3] is None  # no close-ups: the default labels
    rows = closeup_rows(kfs, close, budgets)
    assert rows == [{"keyframe": 2, "t": 1.2, "region": list(BOX), "size": [128, 144], "pixels": budgets[2]}]
    assert top_frames(times, budgets, k=3) == [0.5, 1.2]  # a frame and its close-up are one moment


def test_labels_line_up_and_reach_an_openai_compatible_server():
    from PIL import Image

    from pipelines.answerers.base import load_answerer

    with pytest.raises(ValueError, match="2 labels but 3 timestamps"):
        AnswerRequest(question="q", options=[], frames=[Image.new("RGB", (8, 8))] * 3, timestamps=[1, 2, 2],
                      context=[], labels=["a", "b"])
    labels = ["Frame 1 at 1.0 s:", "Frame 2 at 2.0 s:", "Close-up of frame 2 at 2.0 s (the region that matched):"]
    req = AnswerRequest(question="What is red?", options=[], frames=[Image.new("RGB", (64, 36))] * 3,
                        timestamps=[1.0, 2.0, 2.0], context=[], labels=labels)
    assert frame_labels(req) == labels
    from tests.test_answer import _Server

    class Server(_Server):  # the answerers' test server, taking any request
        def check(self, path, headers, body) -> str:
            return ""

    with Server(reply_text="a red square") as server:
        ans = load_answerer("openai", api_base=server.base, api_model="m")
        out = ans.answer(req)
    seen = server.seen
    parts = seen[0]["messages"][0]["content"]
    at = parts.index({"type": "text", "text": labels[2]})
    assert parts[at + 1]["type"] == "image_url" and sum(p["type"] == "image_url" for p in parts) == 3
    assert labels[2] in out.prompt


def test_vqa_ask_gives_the_answerer_the_closeup_and_logs_it(hd_video, tmp_path):
    """Through the product's own answer step (a tiny video-LLM of the tiny profile reads the frames): the
    keyframe with a region gets its close-up, saved beside the frames and listed in the answer."""
    from index.store import Store
    from pipelines.ask import Asker, AskOptions, _resolve_video
    from pipelines.backends.profiles import Models, get_profile
    from pipelines.indexing import Indexer

    store = Store(tmp_path / "vqa.db")
    models = Models(get_profile("tiny"))
    try:
        asker = Asker(store, models, AskOptions(k=2, zoom_rounds=0, max_new_tokens=4), indexer=Indexer(store, models))
        video = _resolve_video(store, str(hd_video), indexer=asker.indexer)
        kfs = [kf.Keyframe(0.5, 1.0, 0), kf.Keyframe(1.2, 3.0, 0, BOX)]
        out = asker.answer_at(video, "What is red?", None, kfs, save_frames=str(tmp_path / "frames"))
        assert [(c["keyframe"], c["size"]) for c in out["closeups"]] == [(2, [128, 144])]
        assert out["closeups"][0]["image"].endswith("frame_000001.200s_closeup.jpg")
        assert (tmp_path / "frames" / "frame_000001.200s_closeup.jpg").exists()
        assert sum(k["pixels"] for k in out["keyframes"]) + out["closeups"][0]["pixels"] <= 2 * 448 * 252
        # the report shows the same close-up, cropped again the same way
        from types import SimpleNamespace

        from PIL import Image

        from pipelines.report.data import _closeup_images, _source

        shown = _closeup_images(asker, SimpleNamespace(video=video, result=SimpleNamespace(keyframes=kfs)), out,
                                *_source(store, video))
        assert [(c["keyframe"], Image.open(io.BytesIO(c["jpeg"])).size) for c in shown] == [(2, (128, 144))]
        asker.opts = AskOptions(k=2, zoom_rounds=0, max_new_tokens=4, closeups=0)
        assert asker.answer_at(video, "What is red?", None, kfs)["closeups"] == []
    finally:
        store.close()
