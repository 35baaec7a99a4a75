"""Batch analysis over a folder: images per second and peak memory against the image count.

Each run is a fresh ``python -m attnviz analyze FOLDER`` process over N images (the sample
photos repeated); its peak resident memory is read from the kernel (``ru_maxrss``) and its
throughput from the difference between two runs, so model loading cancels out. Images are
processed as a stream, so peak memory should not grow with N.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, machine, save  # noqa: E402

RUNNER = """
import resource, sys, time
from attnviz.cli import main
t = time.perf_counter()
code = main(sys.argv[1:])
print("RESULT", code, time.perf_counter() - t,
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)
"""


def _folder(n: int, where: Path) -> Path:
    samples = sorted((ROOT / "assets" / "samples").glob("*.jpg"))
    folder = where / f"in{n}"
    folder.mkdir()
    for i in range(n):
        src = samples[i % len(samples)]
        shutil.copy(src, folder / f"{i:04d}_{src.name}")
    return folder


def run_once(n: int, device: str, where: Path) -> dict:
    folder = _folder(n, where)
    out = where / f"out{n}"
    cmd = [sys.executable, "-c", RUNNER, "analyze", str(folder), "--out", str(out),
           "--device", device]
    started = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                         env={"ATTNVIZ_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    wall = time.perf_counter() - started
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("RESULT")), None)
    if line is None:
        raise RuntimeError(res.stderr[-2000:])
    _, code, seconds, rss_kb = line.split()
    return {"images": n, "exit_code": int(code), "analyze_s": round(float(seconds), 2),
            "process_wall_s": round(wall, 2), "peak_rss_mb": round(int(rss_kb) / 1024, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", default="cpu")
    p.add_argument("--counts", default="5,40", help="image counts, comma-separated")
    args = p.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            rows.append(run_once(n, args.device, Path(tmp)))
            print(rows[-1], file=sys.stderr, flush=True)
    lo, hi = rows[0], rows[-1]
    rate = (hi["images"] - lo["images"]) / max(hi["analyze_s"] - lo["analyze_s"], 1e-9)
    result = {
        "machine": machine(), "device": args.device, "runs": rows,
        "images_per_second": round(rate, 2),
        "peak_rss_growth_mb": round(hi["peak_rss_mb"] - lo["peak_rss_mb"], 1),
    }
    path = save(f"batch-{args.device}", result)
    print(json.dumps(result, indent=2))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
