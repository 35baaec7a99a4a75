"""Shared helpers for the benchmarks: machine description, interleaved timing, reports."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    desc = (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")
    if torch.cuda.is_available():
        desc += f"; GPU {torch.cuda.get_device_name(0)}"
    return desc


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def interleaved_samples(fns: dict[str, Callable[[], object]], reps: int, warmup: int = 2,
                        device: torch.device | None = None) -> dict[str, list[float]]:
    """Seconds per call, one list per function; they take turns so that machine noise (a
    shared VM's speed drifts by tens of percent within a minute) hits them alike."""
    dev = device or torch.device("cpu")
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            sync(dev)
            t = time.perf_counter()
            fn()
            sync(dev)
            times[name].append(time.perf_counter() - t)
    return times


def _round_ratios(numerator: list[float], denominator: list[float]) -> list[float]:
    return [a / b for a, b in zip(numerator, denominator, strict=True)]


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median of the per-round ratios: each round's two calls ran back to back, so the ratio
    of a round cancels the machine's speed at that moment, which a ratio of medians does not."""
    return statistics.median(_round_ratios(numerator, denominator))


def paired_quartiles(numerator: list[float], denominator: list[float]) -> tuple[float, float]:
    """First and third quartiles of the per-round ratios: how much the rounds disagree."""
    q = statistics.quantiles(_round_ratios(numerator, denominator), n=4)
    return q[0], q[2]


def save(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2))
    return path
