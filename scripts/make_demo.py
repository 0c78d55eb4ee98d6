"""Make the demo video that the README's first command uses: ``assets/demo.mp4`` + ``assets/demo_script.json``.

Five scenes with hard cuts between different backgrounds, a narration spoken by espeak-ng and text
burned in with ffmpeg ``drawtext``. What is said and what is written are different facts, so each
question about the video can be answered from one channel only. The JSON file is the ground truth
(scene times, narration text and times, on-screen texts with their boxes) for tests and the README.

Needs espeak-ng (``apt-get install espeak-ng``) and a TrueType font only to MAKE the video; the mp4
is committed. Usage: ``python scripts/make_demo.py [--out assets/demo.mp4]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pipelines.stages.media import ffmpeg_binary  # noqa: E402

WIDTH, HEIGHT, FPS = 640, 360, 15
LEAD, TAIL = 0.5, 0.7  # silence before and after each scene's narration (seconds)
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"

# background, band colour (a lower band so scenes differ in layout too), texts (size, y, colour), narration
SCENES = [
    {"background": "0x1b2a49", "band": "0x2f4b7c",
     "texts": [("Harbor Tour", 56, 110, "white")],
     "narration": "Welcome to the harbor tour. Today we walk along the old docks."},
    {"background": "0x7a3b1d", "band": "0x4e2612",
     "texts": [("Gate code 4817", 44, 130, "yellow")],
     "narration": "This is the main gate, where the fishing boats come in every morning."},
    {"background": "0x1d6f6a", "band": "0x0f4743",
     "texts": [("Pier 9", 48, 60, "white")],
     "narration": "The ferry to the island leaves at noon. The captain's name is Marlow."},
    {"background": "0x4a4a4a", "band": "0x2a2a2a",
     "texts": [("Fish market closes at 11:30", 36, 150, "white")],
     "narration": "On the left you can see the lighthouse. It is painted green."},
    {"background": "0x3b1f4f", "band": "0x5a3575",
     "texts": [("Thank you for visiting", 40, 120, "white")],
     "narration": "That is the end of our tour. Thank you for listening."},
]


def run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed:\n{proc.stderr.decode('utf-8', 'replace')[-3000:]}")


def speak(text: str, wav: Path, voice: str, speed: int) -> float:
    """Narration to a WAV file with espeak-ng; returns its duration in seconds."""
    run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text])
    with wave.open(str(wav)) as w:
        return w.getnframes() / w.getframerate()


def text_box(text: str, size: int, y: int, font: str) -> tuple[int, int, int, int]:
    """Where drawtext puts ``text`` when centred horizontally at top ``y``: (x0, y0, x1, y1)."""
    from PIL import ImageFont

    f = ImageFont.truetype(font, size)
    x0, y0, x1, y1 = f.getbbox(text)
    x = (WIDTH - (x1 - x0)) // 2
    return x, y, x + (x1 - x0), y + (y1 - y0)


def build(out: Path, script_path: Path, *, voice: str, speed: int, font: str) -> dict:
    if not shutil.which("espeak-ng"):
        raise SystemExit("espeak-ng is needed to make the demo: apt-get install -y espeak-ng")
    if not Path(font).is_file():
        raise SystemExit(f"font not found: {font} (pass --font)")
    tmp = Path(tempfile.mkdtemp(prefix="vqa-demo-"))
    try:
        scenes, t = [], 0.0
        for i, sc in enumerate(SCENES):
            wav = tmp / f"n{i}.wav"
            spoken = speak(sc["narration"], wav, voice, speed)
            dur = round(-(-(LEAD + spoken + TAIL) // 0.2) * 0.2, 1)  # whole frames at 15 fps and 5 fps
            texts = []
            for j, (txt, size, y, colour) in enumerate(sc["texts"]):
                (tmp / f"t{i}_{j}.txt").write_text(txt, encoding="utf-8")
                texts.append({"start": round(t, 3), "end": round(t + dur, 3), "text": txt,
                              "box": list(text_box(txt, size, y, font)), "size": size, "colour": colour})
            scenes.append({"index": i + 1, "start": round(t, 3), "end": round(t + dur, 3),
                           "background": "#" + sc["background"][2:],
                           "narration": {"start": round(t + LEAD, 3), "end": round(t + LEAD + spoken, 3),
                                         "text": sc["narration"]},
                           "on_screen": texts, "_wav": wav, "_dur": dur})
            t += dur

        cmd = [ffmpeg_binary(), "-y", "-hide_banner", "-loglevel", "error"]
        for sc in scenes:
            cmd += ["-f", "lavfi", "-i",
                    f"color=c=0x{sc['background'][1:]}:size={WIDTH}x{HEIGHT}:rate={FPS}:duration={sc['_dur']}"]
        for sc in scenes:
            cmd += ["-i", str(sc["_wav"])]
        n, parts = len(scenes), []
        ms = int(LEAD * 1000)
        for i, sc in enumerate(scenes):
            chain = f"[{i}:v]drawbox=x=0:y={HEIGHT * 3 // 4}:w={WIDTH}:h={HEIGHT // 4}:color={SCENES[i]['band']}:t=fill"
            for j, item in enumerate(sc["on_screen"]):
                x0, y0 = item["box"][0], item["box"][1]
                chain += (f",drawtext=fontfile={font}:textfile={tmp / f't{i}_{j}.txt'}:fontsize={item['size']}"
                          f":fontcolor={item['colour']}:x={x0}:y={y0}")
            parts.append(chain + f",format=yuv420p,setsar=1[v{i}]")
            parts.append(f"[{n + i}:a]aresample=16000,aformat=channel_layouts=mono,adelay={ms},apad,"
                         f"atrim=0:{sc['_dur']},asetpts=N/SR/TB[a{i}]")
        graph = ";".join(parts) + ";" + "".join(f"[v{i}][a{i}]" for i in range(n)) + f"concat=n={n}:v=1:a=1[v][a]"
        cmd += ["-filter_complex", graph, "-map", "[v]", "-map", "[a]",
                "-c:v", "libx264", "-preset", "veryslow", "-tune", "stillimage", "-crf", "30", "-g", str(FPS * 10),
                "-pix_fmt", "yuv420p", "-threads", "1",
                "-c:a", "aac", "-b:a", "32k", "-ar", "16000", "-ac", "1",
                "-movflags", "+faststart", "-map_metadata", "-1", "-fflags", "+bitexact", str(out)]
        out.parent.mkdir(parents=True, exist_ok=True)
        run(cmd)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for sc in scenes:
        del sc["_wav"], sc["_dur"]
    doc = {"video": out.name, "width": WIDTH, "height": HEIGHT, "fps": FPS, "duration": round(t, 3),
           "voice": f"espeak-ng -v {voice} -s {speed}", "scenes": scenes,
           "facts": {
               "spoken_only": ["the ferry to the island leaves at noon", "the captain's name is Marlow",
                               "the lighthouse is painted green", "the fishing boats come in every morning"],
               "written_only": ["Gate code 4817", "Pier 9", "Fish market closes at 11:30"]}}
    script_path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return doc


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "assets" / "demo.mp4")
    ap.add_argument("--script", type=Path, default=None, help="default: demo_script.json next to --out")
    ap.add_argument("--voice", default="en-us")
    ap.add_argument("--speed", type=int, default=150, help="words per minute")
    ap.add_argument("--font", default=FONT)
    args = ap.parse_args(argv)
    script = args.script or args.out.with_name("demo_script.json")
    doc = build(args.out, script, voice=args.voice, speed=args.speed, font=args.font)
    print(f"{args.out}: {doc['duration']:.1f} s, {len(doc['scenes'])} scenes, {args.out.stat().st_size} bytes; "
          f"script {script}")


if __name__ == "__main__":
    main()
