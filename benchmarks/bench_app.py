"""Display changes in the app: rerun time of a colormap, opacity or normalisation change.

Streamlit's AppTest runs ``app.py`` in this process on the default model with a sample
photo; each display change is one rerun, timed, and the network must not run again
(counted by wrapping ``analyze_batch``). Target (issue 6): under 150 ms of app time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, machine, save  # noqa: E402


def run(rounds: int) -> dict:
    import os

    os.environ.setdefault("ATTNVIZ_OFFLINE", "1")
    from streamlit.testing.v1 import AppTest

    import attnviz.analysis as analysis_module

    passes = []
    real = analysis_module.analyze_batch

    def counting(*args, **kwargs):
        passes.append(1)
        return real(*args, **kwargs)

    analysis_module.analyze_batch = counting
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
        t = time.perf_counter()
        at.run()
        first = time.perf_counter() - t
        assert not at.exception, [e.value for e in at.exception]
        after_first = len(passes)
        changes = {
            "colormap": [("selectbox", "cmap", v) for v in ("viridis", "magma", "jet")],
            "opacity": [("slider", "alpha", v) for v in (0.3, 0.7, 0.5)],
            "normalisation": [("radio", "normalization", v) for v in ("global", "layer", "map")],
        }
        timings: dict[str, list[float]] = {k: [] for k in changes}
        for _ in range(rounds):
            for what, steps in changes.items():
                for widget, key, value in steps:
                    getattr(at, widget)(key=key).set_value(value)
                    t = time.perf_counter()
                    at.run()
                    timings[what].append(time.perf_counter() - t)
                    assert not at.exception, [e.value for e in at.exception]
        network_passes = len(passes) - after_first
    finally:
        analysis_module.analyze_batch = real
    return {
        "machine": machine(),
        "first_run_s": round(first, 2),
        "rerun_ms_median": {k: round(statistics.median(v) * 1000, 1) for k, v in timings.items()},
        "rerun_ms_max": {k: round(max(v) * 1000, 1) for k, v in timings.items()},
        "network_passes_during_display_changes": network_passes,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    result = run(args.rounds)
    print(result)
    print(f"saved {save('app-display-cpu', result)}")


if __name__ == "__main__":
    main()
