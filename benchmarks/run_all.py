"""Run every benchmark in turn and write benchmarks/results/REPORT.md.

    .venv/bin/python benchmarks/run_all.py            # about 5 minutes on a 2-core CPU

Each benchmark also runs on its own (``python benchmarks/bench_<name>.py --help``). Run it on
a quiet machine: the figures are medians, but other load still shifts them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BENCHES = [
    ("analysis", ["bench_analysis.py", "--scorecam"]),
    ("analysis, glibc malloc defaults", ["bench_analysis.py", "--glibc-default"]),
    ("render", ["bench_render.py"]),
    ("app display changes", ["bench_app.py"]),
    ("cold start", ["bench_cold_start.py"]),
    ("batch", ["bench_batch.py"]),
]


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def report() -> str:
    lines = ["# attnviz benchmarks", ""]
    for name, allocator in (("analysis-cpu", "with `keep_freed_memory`, as the app and CLI run"),
                            ("analysis-cpu-glibc-default", "glibc malloc defaults")):
        a = _load(name)
        if not a:
            continue
        lines += [f"Analysis, {allocator}. Machine: {a['machine']}", "",
                  "| model | bare forward | attnviz analysis | ratio (target <= 1.25) | "
                  "ratio, quartiles of the rounds | prediction from the photo | "
                  "analysis / prediction, quartiles | "
                  "pytorch_grad_cam GradCAM | GradCAM / analysis (target >= 2.5) |",
                  "|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
        for r in a["rows"]:
            q1, q3 = r.get("analysis_over_bare_quartiles", ("?", "?"))
            p1, p3 = r.get("analysis_over_bare_from_photo_quartiles", ("?", "?"))
            lines.append(
                f"| {r['model']} | {r['bare_forward_ms']} ms | {r['attnviz_analysis_ms']} ms | "
                f"{r['analysis_over_bare']} | {q1}-{q3} | {r.get('bare_from_photo_ms', '?')} ms | "
                f"{r.get('analysis_over_bare_from_photo', '?')} ({p1}-{p3}) | "
                f"{r['pytorch_grad_cam_GradCAM_ms']} ms | {r['gradcam_over_analysis']} |")
        lines.append("")
        for r in a["rows"]:
            if r.get("scorecam"):
                sc = r["scorecam"]
                lines += [f"ScoreCAM alone on {r['model']}: {sc['seconds']} s for "
                          f"{sc['forward_passes']} masked forward passes in batches of "
                          f"{sc.get('batch', '?')}.", ""]
    r = _load("render-cpu")
    if r:
        lines += ["| model | Overview overlays | render time (target < 100 ms) |", "|---|--:|--:|"]
        lines += [f"| {x['model']} | {x['overlays']} | {x['overview_render_ms']} ms |"
                  for x in r["rows"]]
        lines.append("")
    d = _load("app-display-cpu")
    if d:
        med = d["rerun_ms_median"]
        lines += ["App rerun after a display change (AppTest, median; target < 150 ms): "
                  + ", ".join(f"{k} {v} ms" for k, v in med.items())
                  + f"; network passes during the changes: "
                    f"{d['network_passes_during_display_changes']}.", ""]
    c = _load("cold-start-cpu")
    if c:
        lines += [f"Cold start: server answering after {c['server_answering_s']} s, first "
                  f"analysis shown in the browser after {c['first_analysis_shown_s']} s; a "
                  f"second visitor sees the overlays after {c['second_visitor_overlays_s']} s "
                  "(model cached).", ""]
    b = _load("batch-cpu")
    if b:
        runs = ", ".join(f"{x['images']} images: peak {x['peak_rss_mb']} MB" for x in b["runs"])
        lines += [f"Batch CLI: {b['images_per_second']} images/s on CPU; {runs} "
                  f"(growth {b['peak_rss_growth_mb']} MB).", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--only", nargs="*", help="names of benchmarks to run (default all)")
    args = p.parse_args()
    for name, script in BENCHES:
        if args.only and name not in args.only:
            continue
        print(f"== {name}", flush=True)
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / script[0]), *script[1:]],
                       cwd=ROOT, check=True)
    text = report()
    (RESULTS / "REPORT.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
