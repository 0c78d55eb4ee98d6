#!/usr/bin/env bash
# The GPU check: on a machine with a CUDA GPU and no network, in a few minutes, run the tiny random-weights
# model of every video-LLM family on CUDA through `vqa index` and `vqa ask`, ffmpeg's hardware decoding (its
# frames against the software decode's), models freed between index steps (CUDA memory), FAISS on the GPU
# when faiss-gpu is there, and the vLLM backend when vLLM installs; print one PASS / FAIL / SKIP line per check.
# Not run in CI.
#
#   bash bench/gpu_check.sh [WHEELS]        (WHEELS: a folder of wheels; default $VQA_WHEELS or ./wheels)
#
# The machine needs Python (3.10+) with torch (CUDA build), transformers and typer. Everything else comes from
# WHEELS, prepared on a machine with network for the GPU machine's Python (3.12 here):
#
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#       --platform manylinux_2_28_x86_64 -d wheels $PACKAGES      (the list below)
#   pip download --no-deps --only-binary=:all: ... -d wheels torchvision==<the build matching its torch>
#   pip download ... -d wheels faiss-gpu-cu12 (+ its nvidia-* wheels)  # optional: FAISS on the GPU, in a venv of its own
#   pip download ... -d wheels vllm                            # optional: vLLM and its dependencies
#
# Nothing is downloaded here (HF_HUB_OFFLINE=1); the models are built locally with random weights.
# A dry run of the script itself on a CPU machine where vqa is installed already:
#   PYTHON=.venv/bin/python VQA_CHECK_DEVICE=cpu VQA_CHECK_NO_INSTALL=1 bash bench/gpu_check.sh
set -u
cd "$(dirname "$0")/.."
WHEELS=${1:-${VQA_WHEELS:-wheels}}
PY=${PYTHON:-python3}
PACKAGES="open_clip_torch timm ftfy wcwidth sqlite-utils sqlite-fts4 click-default-group tabulate pluggy
python-dateutil six scenedetect opencv-python-headless av imageio-ffmpeg ffmpeg-python future num2words
platformdirs tqdm pillow setuptools"
FAMILIES="qwen2.5-vl llava-onevision qwen3-vl smolvlm internvl gemma3 idefics3"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vqa-gpu-check.XXXXXX")
DEVICE=${VQA_CHECK_DEVICE:-cuda}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false VQA_HOME="$WORK/home" VQA_MODELS="$WORK/models" WORK DEVICE
RESULTS=()
START=$(date +%s)

record() {  # record STATUS NAME DETAIL
    RESULTS+=("$(printf '%-4s  %-28s %s' "$1" "$2" "$3")")
    printf '%-4s  %-28s %s\n' "$1" "$2" "$3" >&2
}

check() {  # check NAME TIMEOUT_S COMMAND...: PASS when it exits 0; FAIL shows the end of its log
    local name=$1 limit=$2 t0 rc
    shift 2
    t0=$(date +%s)
    timeout "$limit" "$@" >"$WORK/$name.log" 2>&1
    rc=$?
    if [ "$rc" -eq 0 ]; then
        record PASS "$name" "$(( $(date +%s) - t0 )) s $(tail -n 1 "$WORK/$name.log" | cut -c1-90)"
    else
        record FAIL "$name" "exit $rc after $(( $(date +%s) - t0 )) s: $(grep -v '^\s*$' "$WORK/$name.log" | tail -n 1 | cut -c1-120)"
        tail -n 15 "$WORK/$name.log" | sed 's/^/      | /' >&2
    fi
    return "$rc"
}

summary() {
    echo
    echo "vqa GPU check: $(( $(date +%s) - START )) s, logs in $WORK"
    printf '%s\n' "${RESULTS[@]}"
    echo "$(printf '%s\n' "${RESULTS[@]}" | grep -c '^PASS') passed, $(printf '%s\n' "${RESULTS[@]}" | grep -c '^FAIL') failed, $(printf '%s\n' "${RESULTS[@]}" | grep -c '^SKIP') skipped"
}
trap summary EXIT

# --- the machine ------------------------------------------------------------------------------------------
check device 60 "$PY" -c "
import torch, transformers
if '$DEVICE' == 'cuda':
    assert torch.cuda.is_available(), 'torch sees no CUDA device'
    print(torch.cuda.get_device_name(0), 'torch', torch.__version__, 'transformers', transformers.__version__,
          'bf16' if torch.cuda.is_bf16_supported() else 'no bf16')
else:
    print('dry run on', '$DEVICE', 'torch', torch.__version__, 'transformers', transformers.__version__)" || exit 1

# --- install vqa and what it needs from WHEELS (into a venv that sees the machine's torch) -----------------
VPY="$PY"
if [ -z "${VQA_CHECK_NO_INSTALL:-}" ]; then
    if "$PY" -m venv --system-site-packages "$WORK/venv" >/dev/null 2>&1 && [ -x "$WORK/venv/bin/pip" ]; then
        VPY="$WORK/venv/bin/python"
    fi  # else: no venv module (or no pip in it): install for the current interpreter's user
    PIP=("$VPY" -m pip install -q --no-index --find-links "$WHEELS" --disable-pip-version-check --no-deps)
    [ "$VPY" = "$PY" ] && PIP+=(--user)
    # shellcheck disable=SC2086
    if ! check install 240 "${PIP[@]}" $PACKAGES faiss-cpu; then
        echo "prepare $WHEELS with: pip download --no-deps --only-binary=:all: --python-version" \
             "$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')" \
             "--platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 -d $WHEELS" $PACKAGES faiss-cpu >&2
        exit 1
    fi
    if ! "$VPY" -c "import torchvision" >/dev/null 2>&1; then
        check torchvision 120 "${PIP[@]}" torchvision || exit 1
    fi
    check install-vqa 120 "${PIP[@]}" --no-build-isolation -e . || exit 1
fi
export VPY
vqa() { "$VPY" -c "from vqa_cli.app import main; main()" "$@"; }
export -f vqa

# --- tiny models of every family, a generated video ------------------------------------------------------
check build-models 300 "$VPY" -c "
from pipelines.backends import tiny_families, tiny_vlm
tiny_vlm.build_tiny_qwen2_5_vl(); tiny_vlm.build_tiny_llava_onevision()
for f in tiny_families.FAMILIES:
    tiny_families.build(f)
print('built', ', '.join(tiny_families.FAMILIES), '+ qwen2.5-vl, llava-onevision')" || exit 1
check video 60 "$VPY" -c "
from tests.synth import make_scenes_video
make_scenes_video('$WORK/v.mp4', [2.0, 1.5, 2.5])
print('$WORK/v.mp4')" || exit 1

# --- each family on the device: loaded there in bf16 (CUDA) / float32 (CPU), answering and captioning --------
check "answer-on-$DEVICE" 240 "$VPY" - <<'EOF'
import os

import torch
from PIL import Image

from pipelines.answerers.base import AnswerRequest, load_answerer

device = os.environ["DEVICE"]
fams = ["qwen2.5-vl", "llava-onevision", "qwen3-vl", "smolvlm", "internvl", "gemma3", "idefics3"]
frames = [Image.new("RGB", (640, 360), c) for c in [(200, 30, 30), (30, 200, 30), (30, 30, 200)]]
if device == "cuda":
    want = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
else:
    want = torch.float32
for fam in fams:
    ans = load_answerer(f"tiny-{fam}", device=device)
    p = next(ans.model.parameters())
    assert p.device.type == device and p.dtype == want, (fam, p.device, p.dtype)
    req = AnswerRequest("What colour comes first?", ["red", "green"], frames, [1.0, 2.0, 3.0], [],
                        pixel_budgets=[448 * 448, 224 * 224, 112 * 112], max_new_tokens=8)
    out = ans.answer(req)
    assert out.generated_tokens > 0 and out.frames_seen == [1.0, 2.0, 3.0]
    if hasattr(ans, "caption_frames"):
        assert len(ans.caption_frames(frames, "Describe this scene.", max_new_tokens=8)) == 3
    print(fam, p.device, p.dtype, out.frame_sizes, flush=True)
    del ans
    if device == "cuda":
        torch.cuda.empty_cache()
print("all", len(fams), "families answered on", device)
EOF

family_cli() {  # vqa index (captions by the family's tiny model) and vqa ask (answered by it), on the device
    local f=$1 db="$WORK/check.db"  # one database: after the first, only the captions stage reruns
    vqa index "$WORK/v.mp4" --profile tiny --captioner "generic:tiny-$f" --device "$DEVICE" --db "$db" --jsonl \
        || return 1
    vqa ask "$WORK/v.mp4" "What colour is shown first?" --profile tiny --answerer "tiny-$f" --device "$DEVICE" \
        --frames 4 --zoom-rounds 1 --max-new-tokens 8 --json --db "$db" >"$WORK/$f.json" || return 1
    "$VPY" -c "
import json, sys
out = json.load(open(sys.argv[1]))
assert out['settings']['models']['answerer']['name'] == sys.argv[2], out['settings']
print('keyframes', [k['t'] for k in out['keyframes']], 'answer', repr(out['answer']['model_text'][:30]))
" "$WORK/$f.json" "tiny-$f"
}
export -f family_cli
for fam in $FAMILIES; do
    check "index+ask:$fam" 150 bash -c 'family_cli "$1"' _ "$fam"
done

# --- ffmpeg hardware decoding: the frames of a -hwaccel cuda decode are the software decode's ------------------
# The ffmpeg is the one vqa runs (ffmpeg_bin: VQA_FFMPEG, a recent one on PATH, else imageio-ffmpeg's binary).
check hwaccel-frames 180 "$VPY" - <<'EOF'
import os

import numpy as np

from pipelines.stages import ffmpeg_bin
from pipelines.stages.media import decode, probe, read_frames_at
from tests.synth import make_codec_variant

ff = ffmpeg_bin.ffmpeg_choice()
print(ff.describe(), "hwaccels:", ", ".join(ffmpeg_bin.hwaccels(ff.path)), flush=True)
os.environ.pop("VQA_HWACCEL", None)
auto = ffmpeg_bin.hwaccel_choice("pass")
print("auto:", auto.describe(), flush=True)
if os.environ["DEVICE"] == "cuda":
    assert auto.name == "cuda", auto
files = [os.path.join(os.environ["WORK"], "v.mp4")]
for kind in ("open_gop", "bframes", "high444", "mpegts"):
    files.append(make_codec_variant(os.path.join(os.environ["WORK"], f"hw_{kind}.mp4"), kind, size="640x360"))
for path in map(str, files):
    info = probe(path)
    times = [0.37, 1.93, info.duration - 0.05]
    got = {}
    for mode in ("none", "cuda"):
        os.environ["VQA_HWACCEL"] = mode
        warnings = []
        seq = [(t, f) for width in (info.width, 160)
               for t, f in decode(path, fps=5, width=width, info=info, warnings=warnings)]
        at = read_frames_at(path, times, width=info.width, info=info, warnings=warnings)
        got[mode] = (seq, at, warnings)
    (s0, a0, w0), (s1, a1, w1) = got["none"], got["cuda"]
    assert [t for t, _ in s0] == [t for t, _ in s1], path
    bad = sum(not np.array_equal(x, y) for (_, x), (_, y) in zip(s0, s1))
    bad += sum(not np.array_equal(x, y) for x, y in zip(a0, a1))
    assert not bad, f"{os.path.basename(path)}: {bad} frames differ between hardware and software decoding"
    assert w0 == w1, (w0, w1)
    print(os.path.basename(path), len(s0) + len(a0), "frames identical", flush=True)
if os.environ["DEVICE"] == "cuda":
    assert not ffmpeg_bin._hw_failed, ffmpeg_bin._hw_failed  # hardware decoding started every time
    print("hwaccel cuda:", len(files), "files, every frame equal to the software decode")
else:  # a dry run: cuda was asked for, could not start, and the software decode took over
    print("dry run: cuda fell back to software:", ffmpeg_bin._hw_failed or "(not offered)", "; frames equal")
EOF

# --- one big model at a time on the GPU: the CLIP's memory goes back before the captioner loads --------------
check free-between-stages 120 "$VPY" - <<'EOF'
import os

from index.store import Store
from pipelines.backends.profiles import Models, get_profile
from pipelines.indexing import Indexer

device = os.environ["DEVICE"]
os.environ.pop("VQA_FREE_MODELS", None)
models = Models(get_profile("tiny"), device=device)  # policy auto: models on a GPU are freed between steps
seen = {}


def watch(event, stage, model):
    import torch

    seen[(event, stage)] = torch.cuda.memory_allocated() if device == "cuda" else 0


models.on_event(watch)
store = Store(os.path.join(os.environ["WORK"], "free.db"))
res = Indexer(store, models).index(os.path.join(os.environ["WORK"], "v.mp4"))
assert res.status == "indexed", res.error
if device == "cuda":
    assert ("freed", "clip") in seen, seen
    assert seen[("loading", "captioner")] < seen[("loaded", "clip")], seen
    print("CUDA memory: clip loaded", seen[("loaded", "clip")], "bytes; at captioner load",
          seen[("loading", "captioner")], "; loaded now:", models.loaded())
else:
    print("dry run on", device, "(nothing freed: tiny CPU models stay); loaded now", models.loaded())
EOF

# --- FAISS on the GPU (faiss-gpu in a venv of its own: vqa's runs above use faiss-cpu; never both in one) -----
FPY="$VPY"
if ! "$FPY" -c "import faiss, sys; sys.exit(0 if faiss.get_num_gpus() > 0 else 1)" >/dev/null 2>&1; then
    FPY=""
    GPU_WHEEL=$(ls "$WHEELS"/faiss_gpu* 2>/dev/null | head -n 1)
    if [ -n "$GPU_WHEEL" ] && "$PY" -m venv --system-site-packages "$WORK/faiss-venv" >/dev/null 2>&1 &&
       "$WORK/faiss-venv/bin/python" -m pip install -q --no-index --find-links "$WHEELS" "$GPU_WHEEL" \
           >"$WORK/faiss-install.log" 2>&1; then
        FPY="$WORK/faiss-venv/bin/python"
    fi
fi
if [ -n "$FPY" ] && "$FPY" -c "import faiss, sys; sys.exit(0 if faiss.get_num_gpus() > 0 else 1)" >/dev/null 2>&1; then
    check faiss-gpu 60 "$FPY" -c "
import faiss, numpy as np
x = np.random.default_rng(0).standard_normal((20000, 512)).astype('float32'); faiss.normalize_L2(x)
cpu = faiss.IndexFlatIP(512); cpu.add(x)
gpu = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, cpu)
d1, i1 = cpu.search(x[:64], 10); d2, i2 = gpu.search(x[:64], 10)
assert (i1[:, 0] == i2[:, 0]).all() and np.allclose(d1, d2, atol=1e-4)
from index.vectors import on_gpu, top_k  # the library-wide index as vqa search --all builds it
g = on_gpu(cpu); assert g is not cpu, 'vqa kept the library index on the CPU'
d3, i3 = top_k(g, x[:64], 10); assert (i1[:, 0] == i3[:, 0]).all()
print('faiss', faiss.__version__, 'GPU search agrees with CPU on 64 queries; vqa moves its library index there')"
else
    record SKIP faiss-gpu "no faiss-gpu wheel in $WHEELS, or it did not install (with its CUDA libraries), or it sees no GPU"
fi

# --- vLLM in-process, when it installs ----------------------------------------------------------------------
if "$VPY" -c "import vllm" >/dev/null 2>&1; then
    HAVE_VLLM=1
elif [ -z "${VQA_CHECK_NO_INSTALL:-}" ] && ls "$WHEELS"/vllm-* >/dev/null 2>&1; then
    if "$VPY" -m pip install -q --no-index --find-links "$WHEELS" vllm >"$WORK/vllm-install.log" 2>&1; then
        HAVE_VLLM=1
    else
        record SKIP vllm "did not install: $(grep -i error "$WORK/vllm-install.log" | tail -n 1 | cut -c1-100)"
    fi
else
    record SKIP vllm "not installed and no vllm wheel in $WHEELS"
fi
if [ -n "${HAVE_VLLM:-}" ]; then
    export VQA_VLLM_EAGER=1 VQA_VLLM_MAX_MODEL_LEN=4096 VQA_VLLM_MAX_IMAGES=8
    check vllm 280 bash -c '
        vqa ask "$WORK/v.mp4" "What colour is shown first?" --profile tiny --frames 4 --max-new-tokens 8 \
            --answerer "vllm:$VQA_MODELS/tiny-qwen3-vl-v2" --db "$WORK/check.db" --json >"$WORK/vllm.json" &&
        "$VPY" -c "import json, sys; a = json.load(open(sys.argv[1]))[\"answer\"]; print(\"vllm:\", repr(a[\"model_text\"][:40]))" "$WORK/vllm.json"'
fi
