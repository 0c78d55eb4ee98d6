"""The GPU paths that also run (and are checked) without a GPU: one big model at a time, and ffmpeg's
hardware decoding chosen only where it can work, with the software decode's frames either way."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

from index.store import Store
from pipelines.backends.loads import LOADS
from pipelines.backends.profiles import Models, footprint, get_profile
from pipelines.errors import UsageError
from pipelines.stages import ffmpeg_bin
from pipelines.stages.media import decode, probe, read_frames_at
from tests.synth import make_scenes_video

# -- one big model at a time ------------------------------------------------------------------------------


def _torch_modules(model) -> list:
    import torch

    return [v for v in vars(model).values() if isinstance(v, torch.nn.Module)]


class LoadWatch:
    """Listens to a Models' real load/free events; on each load it notes which earlier models are still
    alive (weak references to the loaded objects and their torch modules, after a collection)."""

    def __init__(self, models: Models):
        self.refs: dict[str, list[weakref.ref]] = {}
        self.alive_at_load: dict[str, set[str]] = {}
        self.events: list[tuple[str, str]] = []
        models.on_event(self)

    def __call__(self, event: str, stage: str, model) -> None:
        self.events.append((event, stage))
        if event == "loading":
            gc.collect()
            self.alive_at_load[stage] = {s for s, refs in self.refs.items() if any(r() is not None for r in refs)}
        elif event == "loaded":
            self.refs[stage] = [weakref.ref(model), *(weakref.ref(m) for m in _torch_modules(model))]


@pytest.fixture(scope="module")
def small_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpu_paths") / "three scenes.mp4"
    make_scenes_video(path, [1.2, 1.2, 1.2], audio=False)
    return path


def _index(tmp_path, models: Models, path) -> None:
    from pipelines.indexing import Indexer

    store = Store(tmp_path / "vqa.db")
    try:
        res = Indexer(store, models).index(str(path))
        assert res.status == "indexed", res.error
        assert {"frames", "captions"} <= set(res.stages_run)
    finally:
        store.close()


def test_the_clip_is_collected_before_the_captioner_loads(tmp_path, small_video):
    models = Models(get_profile("tiny"), free="always")
    watch = LoadWatch(models)
    _index(tmp_path, models, small_video)
    assert len(watch.refs["clip"]) >= 2  # the wrapper and its torch module(s) were watched
    assert "clip" not in watch.alive_at_load["captioner"], watch.events
    assert ("freed", "clip") in watch.events
    assert watch.events.index(("freed", "clip")) < watch.events.index(("loading", "captioner"))
    assert models.loaded() == ["captioner"]  # the last step's model stays: the next video may need it


def test_never_keeps_the_clip_alive_beside_the_captioner(tmp_path, small_video):
    """The control: the same run without freeing has both alive at once (so the test above can fail)."""
    models = Models(get_profile("tiny"), free="never")
    watch = LoadWatch(models)
    _index(tmp_path, models, small_video)
    assert "clip" in watch.alive_at_load["captioner"]
    assert not [e for e in watch.events if e[0] == "freed"]
    assert models.loaded() == ["captioner", "clip"]


def test_the_captioner_loads_behind_the_decode_only_where_it_stays_beside_the_clip(tmp_path, small_video):
    """A model the policy keeps beside the CLIP anyway loads in the loader thread while ffmpeg decodes (its
    seconds hidden); under "always" (the CLIP must go first) it still loads after the decode, on its own."""
    import threading

    where = {}
    for free in ("never", "always"):
        models = Models(get_profile("tiny"), free=free)
        models.on_event(lambda event, stage, _m, free=free: where.setdefault((free, event, stage),
                                                                            threading.current_thread().name))
        _index(tmp_path / free, models, small_video)
    assert where[("never", "loading", "captioner")].startswith("vqa-load")
    assert where[("always", "loading", "captioner")] == threading.main_thread().name


def test_a_slow_load_holds_only_its_own_model():
    """The CLIP loading in the loader thread (seconds of imports) used to hold the models' one lock, so the
    OCR the decode needs first waited for it; now a load holds its own stage's lock: another stage's model
    comes at once, and two threads asking for the same model still load it once."""
    import threading

    models = Models(get_profile("tiny"))
    started, release = threading.Event(), threading.Event()
    calls = []

    def slow():
        calls.append("clip")
        started.set()
        assert release.wait(10)
        return "the clip"

    got = []
    first = threading.Thread(target=lambda: got.append(models._get("clip", slow)))
    second = threading.Thread(target=lambda: got.append(models._get("clip", slow)))
    first.start()
    assert started.wait(10)
    second.start()
    assert models._get("ocr", lambda: "the ocr") == "the ocr"  # while the clip is still loading
    assert got == [] and first.is_alive()
    release.set()
    first.join(10)
    second.join(10)
    assert got == ["the clip", "the clip"] and calls == ["clip"]


def test_auto_keeps_small_cpu_models_and_frees_what_is_big(tmp_path, small_video, monkeypatch):
    monkeypatch.delenv("VQA_FREE_MODELS", raising=False)
    models = Models(get_profile("tiny"))
    assert models.free == "auto"
    watch = LoadWatch(models)
    _index(tmp_path, models, small_video)
    size, on_gpu = footprint(models.clip())
    assert 0 < size < (1 << 30) and not on_gpu  # tiny, on the CPU: kept warm
    assert "clip" in watch.alive_at_load["captioner"]
    # the same models counted as big (the threshold is the only difference): the CLIP goes
    import pipelines.backends.profiles as profiles

    monkeypatch.setattr(profiles, "BIG_MODEL_BYTES", size)
    models2 = Models(get_profile("tiny"))
    watch2 = LoadWatch(models2)
    _index(tmp_path / "again", models2, small_video)
    assert "clip" not in watch2.alive_at_load["captioner"]


def test_ask_frees_the_indexing_models_and_keeps_the_answering_ones_warm(tmp_path, small_video):
    from pipelines.ask import Asker, AskOptions
    from pipelines.indexing import Indexer

    store = Store(tmp_path / "vqa.db")
    models = Models(get_profile("tiny"), free="always")
    watch = LoadWatch(models)
    asker = Asker(store, models, AskOptions(k=2, zoom_rounds=0, max_new_tokens=4), indexer=Indexer(store, models))
    try:
        asker.ask(str(small_video), "What is shown first?")  # indexes the video first, then answers
        assert "captioner" not in watch.alive_at_load["answerer"], watch.events
        assert models.loaded() == ["answerer", "clip"]
        LOADS.clear()
        for q in ("Is there text?", "What colour is the last scene?"):  # --questions: nothing reloads
            asker.ask(str(small_video), q)
        assert not LOADS, dict(LOADS)
    finally:
        store.close()


def test_release_and_a_bad_policy(monkeypatch):
    models = Models(get_profile("tiny"), free="never")
    clip = weakref.ref(models.clip())
    assert models.release("clip", "captioner") == ["clip"]  # release is explicit: whatever the policy
    assert clip() is None and models.loaded() == []
    monkeypatch.setenv("VQA_FREE_MODELS", "sometimes")
    with pytest.raises(UsageError, match="VQA_FREE_MODELS"):
        Models(get_profile("tiny"))


# -- hardware decoding ------------------------------------------------------------------------------------


@pytest.fixture
def fresh_hw(monkeypatch):
    monkeypatch.delenv("VQA_FFMPEG", raising=False)
    ffmpeg_bin.ffmpeg_choice.cache_clear()
    ffmpeg_bin._hw_failed.clear()
    yield
    ffmpeg_bin._hw_failed.clear()
    ffmpeg_bin.ffmpeg_choice.cache_clear()


needs_no_gpu = pytest.mark.skipif(ffmpeg_bin.cuda_visible(), reason="a CUDA device is visible here "
                                  "(bench/gpu_check.sh compares hardware and software frames there)")


@needs_no_gpu
def test_no_cuda_device_means_no_hwaccel_flags(fresh_hw, monkeypatch, small_video):
    monkeypatch.delenv("VQA_HWACCEL", raising=False)
    choice = ffmpeg_bin.hwaccel_choice("pass")
    assert choice.name is None and "auto" in choice.why
    assert ffmpeg_bin.hwaccel_args(str(small_video), "pass") == ([], "")
    assert ffmpeg_bin.hwaccel_args(str(small_video), "seek") == ([], "")


def test_hidden_devices_and_none_mean_software(fresh_hw, monkeypatch, small_video):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert not ffmpeg_bin.cuda_visible()
    assert ffmpeg_bin.hwaccel_args(str(small_video)) == ([], "")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setenv("VQA_HWACCEL", "none")
    assert ffmpeg_bin.hwaccel_choice().describe() == "hardware decoding: off (VQA_HWACCEL=none)"
    assert ffmpeg_bin.hwaccel_args(str(small_video)) == ([], "")


def test_a_hwaccel_this_ffmpeg_lacks_is_software(fresh_hw, monkeypatch, small_video):
    monkeypatch.setenv("VQA_HWACCEL", "no-such-accel")
    choice = ffmpeg_bin.hwaccel_choice()
    assert choice.name is None and "offers only" in choice.why
    assert ffmpeg_bin.hwaccel_args(str(small_video)) == ([], "")


def test_hwaccels_are_read_from_the_binary(fresh_hw):
    listed = ffmpeg_bin.hwaccels(ffmpeg_bin.ffmpeg_binary())
    assert listed and all(name.isidentifier() for name in listed)  # e.g. ('vdpau', 'cuda', 'vaapi', ...)


@needs_no_gpu
def test_asking_for_cuda_without_a_device_falls_back_to_the_software_frames(fresh_hw, monkeypatch, small_video):
    path = str(small_video)
    info = probe(path)
    monkeypatch.setenv("VQA_HWACCEL", "none")
    soft = list(decode(path, fps=5, width=160, info=info))
    soft_at = read_frames_at(path, [0.3, 1.9, 3.1], width=160, info=info)

    monkeypatch.setenv("VQA_HWACCEL", "cuda")
    lists_cuda = "cuda" in ffmpeg_bin.hwaccels(ffmpeg_bin.ffmpeg_binary())
    flags, prefix = ffmpeg_bin.hwaccel_args(path, "pass")
    if lists_cuda:  # asked for and offered: tried (and it cannot start here, so software takes over)
        assert flags == ["-hwaccel", "cuda"] and prefix == "format=yuv420p,"
    else:
        assert flags == []
    warnings: list[str] = []
    hard = list(decode(path, fps=5, width=160, info=info, warnings=warnings))
    assert [t for t, _ in hard] == [t for t, _ in soft]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(hard, soft))
    assert not warnings
    if lists_cuda:  # given up for the process, with ffmpeg's reason
        choice = ffmpeg_bin.hwaccel_choice()
        assert choice.name is None and "did not start" in choice.why
        ffmpeg_bin._hw_failed.clear()  # the random-access read meets the same failure on its own
    hard_at = read_frames_at(path, [0.3, 1.9, 3.1], width=160, info=info)
    assert all(np.array_equal(a, b) for a, b in zip(hard_at, soft_at))
    if lists_cuda:
        assert ffmpeg_bin._hw_failed


def test_library_index_stays_on_the_cpu_without_a_gpu(monkeypatch):
    """faiss-cpu (no GPU): the library-wide index is the CPU one, and searches as before; with faiss-gpu it
    moves to every GPU FAISS sees (checked by bench/gpu_check.sh on a GPU machine)."""
    import faiss
    import numpy as np

    from index.vectors import flat_index, on_gpu, top_k

    x = np.random.default_rng(0).standard_normal((200, 32)).astype("float32")
    faiss.normalize_L2(x)
    cpu = flat_index(x)
    assert faiss.get_num_gpus() == 0 and on_gpu(cpu) is cpu
    monkeypatch.setenv("VQA_FAISS_GPU", "0")
    assert on_gpu(cpu) is cpu
    _, ids = top_k(on_gpu(cpu), x[:5], 3)
    assert list(ids[:, 0]) == [0, 1, 2, 3, 4]
