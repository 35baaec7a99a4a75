"""Rendering: an Analysis to every overlay of the Overview tab, without any network call.

Target (issue 6): under 100 ms for ResNet-50 on CPU. Colormaps are table lookups on arrays
(no matplotlib figure per overlay); the photo is the app's display size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_analysis import _models  # noqa: E402
from benchmarks.common import ROOT, machine, save  # noqa: E402


def run(reps: int) -> dict:
    from attnviz import analyze
    from attnviz.inputs import load_image
    from attnviz.ui import views

    image = load_image(ROOT / "assets" / "samples" / "chelsea.jpg").array
    rows = []
    for name, loaded in _models("cpu").items():
        analysis = analyze(image, loaded)
        display = views.Display()
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            photo = views.display_photo(analysis.image)
            items = views.overview_items(analysis)
            scales = views.scales_for([items], display.normalization)
            tiles = views.render_tiles(photo, items, scales, display)
            times.append(time.perf_counter() - t)
        rows.append({"model": name, "overlays": len(tiles),
                     "overview_render_ms": round(statistics.median(times) * 1000, 1)})
        print(rows[-1], file=sys.stderr, flush=True)
    return {"machine": machine(), "reps": reps, "rows": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--reps", type=int, default=15)
    args = p.parse_args()
    from attnviz.memory import keep_freed_memory

    keep_freed_memory()  # as the app runs
    result = run(args.reps)
    print(f"saved {save('render-cpu', result)}")


if __name__ == "__main__":
    main()
