"""Keyframe-search quality with a given CLIP: `vqa eval --search uniform,topk,vqa --search-only` on a
native-format benchmark whose items carry evidence (e.g. long videos with one short "needle" shot).

    python bench/search_quality_eval.py BENCH.jsonl --clip CONFIG.json --clip-pretrained WEIGHTS.pt \
        [--video-root DIR] [--work DIR] [--frames 8] [--profile tiny] [-- extra vqa eval options]

Prints `vqa eval`'s table, then hit rate split by evidence length (shorter than the 1 fps index
interval or not), and for each item the product's search missed: its zoom ranges per round and the
best keyframe score, so a tuner can see where the search looked. The database and results live under
--work (default: a folder next to BENCH), so a second run reuses the index and resumes.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pipelines import defaults  # noqa: E402


def _overlaps(a: float, b: float, evidence: list[list[float]]) -> bool:
    return any(a <= e and s <= b for s, e in evidence)


def breakdown(results: list[dict], short_s: float = 1.0) -> list[str]:
    """Hit rate per method for evidence shorter than ``short_s`` seconds and the rest."""
    latest = {(r["id"], r["method"]): r for r in results}
    groups: dict[tuple[str, str], list[bool]] = defaultdict(list)
    methods: list[str] = []
    for (_, method), r in latest.items():
        if r.get("error") or not r.get("evidence"):
            continue
        methods = methods if method in methods else [*methods, method]
        length = max(e - s for s, e in r["evidence"])
        group = f"evidence < {short_s:g} s" if length < short_s else f"evidence >= {short_s:g} s"
        groups[(group, method)].append(bool(r["hit"]))
        groups[("all", method)].append(bool(r["hit"]))
    lines = ["hit rate by evidence length:", "  " + " " * 18 + "".join(f"{m:>14}" for m in methods)]
    for group in ("all", f"evidence < {short_s:g} s", f"evidence >= {short_s:g} s"):
        cells = []
        for m in methods:
            hits = groups.get((group, m), [])
            cells.append(f"{sum(hits) / len(hits):.2f} ({sum(hits)}/{len(hits)})" if hits else "-")
        lines.append(f"  {group:<18}" + "".join(f"{c:>14}" for c in cells))
    return lines


def misses(results: list[dict], method: str = "vqa") -> list[str]:
    """Where the product's search looked when it missed the evidence."""
    out = []
    for r in results:
        if r.get("method") != method or r.get("error") or r.get("hit") is not False:
            continue
        ev = r["evidence"]
        zoom = []
        for tr in r.get("trace") or []:
            if tr.get("round"):
                rs = tr.get("ranges") or []
                on = any(_overlaps(a, b, ev) for a, b in rs)
                zoom.append(f"r{tr['round']} {len(rs)} ranges{' (one on the evidence)' if on else ''}"
                            f" best {tr.get('best_score')}")
        kfs = r.get("keyframes") or []
        best = max(kfs, key=lambda k: k.get("score") or float("-inf"), default=None)
        near = min((min(abs(k["t"] - s), abs(k["t"] - e)) for k in kfs for s, e in ev), default=None)
        subs = ", ".join(s.get("text", "") for s in r.get("subqueries") or [])
        out.append(f"  {r['id']}: evidence {ev}, nearest keyframe {near:.1f} s away, best keyframe "
                   f"t={best['t']} score={best['score']}; zoom: {'; '.join(zoom) or 'none'}; subqueries: {subs}"
                   if best else f"  {r['id']}: no keyframes")
    return [f"{method} misses:", *out] if out else []


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench", type=Path, help="native JSON Lines with evidence")
    ap.add_argument("--clip", required=True, help="open_clip model config JSON (or a model name)")
    ap.add_argument("--clip-pretrained", required=True, help="the CLIP checkpoint (or a pretrained tag)")
    ap.add_argument("--video-root", type=Path, help="default: the benchmark file's folder")
    ap.add_argument("--work", type=Path, help="database and results (default: BENCH's folder/eval-work)")
    ap.add_argument("--frames", type=int, default=defaults.K)
    ap.add_argument("--profile", default="tiny", help="profile for the other models (default: tiny)")
    ap.add_argument("--methods", default="uniform,topk,vqa")
    ap.add_argument("--no-resume", action="store_true", help="rerun every item (the index is kept)")
    ap.add_argument("--vqa", default=f"{shlex.quote(sys.executable)} -m vqa_cli.app",
                    help="how to run vqa (default: this Python's vqa_cli)")
    ap.add_argument("extra", nargs="*", help="more `vqa eval` options, after --")
    a = ap.parse_args(argv)

    work = a.work or a.bench.resolve().parent / "eval-work"
    work.mkdir(parents=True, exist_ok=True)
    out = work / f"{a.bench.stem}.k{a.frames}.results.jsonl"
    cmd = [*shlex.split(a.vqa), "eval", str(a.bench), "--format", "native",
           "--video-root", str(a.video_root or a.bench.resolve().parent), "--frames", str(a.frames),
           "--search", a.methods, "--search-only", "--out", str(out), "--db", str(work / "vqa.db"),
           "--profile", a.profile, "--clip", a.clip, "--clip-pretrained", a.clip_pretrained,
           *(["--no-resume"] if a.no_resume else []), *a.extra]
    print("$ " + shlex.join(cmd), file=sys.stderr)
    rc = subprocess.run(cmd).returncode
    if not out.exists():
        return rc or 1
    results = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    print()
    print("\n".join(breakdown(results)))
    miss = misses(results)
    if miss:
        print()
        print("\n".join(miss))
    return rc


if __name__ == "__main__":
    sys.exit(main())
