"""Per-call recording of what attention modules attend to.

A cached model is shared by every browser session and thread, so modules must never keep
their last maps as attributes. Instead each analysis opens a ``Recorder`` in a
``contextvars`` context; modules look up the *current* recorder and write into it. Threads
(and Streamlit sessions, which run in their own threads) each see only their own recorder.

The recorder also carries per-call switches that the shared model consults:
``disabled`` (module names to run as identity, for ablation), ``probe_layers`` (layers whose
SimAM energy should be observed) and ``cam_layers`` (layers whose activation should become the
start of the autograd graph for a CAM).
"""

from __future__ import annotations

import contextvars
import os
import re
import threading
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

_CURRENT: contextvars.ContextVar[Recorder | None] = contextvars.ContextVar(
    "attnviz_recorder", default=None
)


@dataclass
class RawRecord:
    """One tensor a module reported during a forward pass (batch dimension kept)."""

    layer: str
    module: str
    kind: str
    tensor: torch.Tensor
    meta: dict[str, Any] = field(default_factory=dict)


class Recorder:
    """Collects records for one forward pass of one model.

    Module names come from ``model.named_modules()`` so records are labelled by the path a
    user sees in the model (``layer3.2.bn3.1``), without modules knowing their own names.
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        *,
        disabled: set[str] | frozenset[str] = frozenset(),
        probe_layers: dict[str, float] | None = None,
        cam_layers: set[str] | frozenset[str] = frozenset(),
        keep: bool = True,
    ) -> None:
        self._names: dict[int, str] = module_names(model) if model is not None else {}
        self.disabled = frozenset(disabled)
        self.probe_layers = dict(probe_layers or {})
        self.cam_layers = frozenset(cam_layers)
        self.keep = keep
        self.records: list[RawRecord] = []
        self.cam_activations: dict[str, torch.Tensor] = {}
        self._deferred: list[Callable[[], None]] = []
        # Set by deferred work that found its input overwritten: the records are not to be
        # trusted and the pass must run again (see ``attention.probe._ProbeHook``).
        self.stale = False

    def name_of(self, module: nn.Module) -> str:
        return self._names.get(id(module), type(module).__name__)

    def is_disabled(self, module: nn.Module) -> bool:
        return bool(self.disabled) and self.name_of(module) in self.disabled

    def add(
        self,
        module: nn.Module,
        module_kind: str,
        kind: str,
        tensor: torch.Tensor,
        *,
        layer: str | None = None,
        **meta: Any,
    ) -> RawRecord | None:
        if not self.keep:
            return None
        raw = RawRecord(
            layer=layer if layer is not None else self.name_of(module),
            module=module_kind,
            kind=kind,
            tensor=tensor.detach(),
            meta=meta,
        )
        self.records.append(raw)
        return raw

    def defer(self, work: Callable[[], None]) -> None:
        """Work to run once the forward pass is over (``finish``).

        Observation that needs no autograd (a probe's energy) is cheaper after the network
        than between its layers: measured on the default model, computing 16 SimAM energies
        inside the forward slowed the forward itself by more than the energies cost.
        """
        self._deferred.append(work)

    def finish(self) -> None:
        """Run the deferred work, in order; ``recording`` calls this when its block ends."""
        work, self._deferred = self._deferred, []
        with torch.no_grad():
            for fn in work:
                fn()

    def finish_in_background(self, device: torch.device) -> Future[None]:
        """Run the deferred work on a worker thread; the records are complete once the returned
        future is done (``result()`` re-raises what the work raised).

        An analysis takes its CAM backward, top-5 and maps meanwhile: small, latency-bound
        steps that leave a CPU core idle. On the default model (2-core VM), overlapping its 16
        SimAM energies with them took the analysis from 1.245x to 1.18x a bare forward in the
        median of ``benchmarks/run_all.py`` (README). On an accelerator the work runs here, on the
        caller's stream: queuing its kernels is all a thread could overlap.
        """
        if device.type == "cpu":
            return _finisher().submit(self.finish)
        self.finish()
        done: Future[None] = Future()
        done.set_result(None)
        return done


_FINISHER: ThreadPoolExecutor | None = None
_FINISHER_LOCK = threading.Lock()


def _finisher() -> ThreadPoolExecutor:
    """One shared worker pool, started on first use (importing attnviz starts no thread)."""
    global _FINISHER
    with _FINISHER_LOCK:
        if _FINISHER is None:
            _FINISHER = ThreadPoolExecutor(max_workers=2, thread_name_prefix="attnviz-finish")
        return _FINISHER


def _forget_finisher_in_child() -> None:
    """A forked child inherits the pool but none of its threads; work submitted to it would
    wait for ever. The child starts a pool of its own on first use instead."""
    global _FINISHER, _FINISHER_LOCK
    _FINISHER, _FINISHER_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_finisher_in_child)


_NAMES: weakref.WeakKeyDictionary[nn.Module, dict[int, str]] = weakref.WeakKeyDictionary()
_NAMES_LOCK = threading.Lock()


def module_names(model: nn.Module) -> dict[int, str]:
    """id(module) -> dotted path, computed once per model (a loaded model never changes shape).

    Walking a few hundred modules per call cost ~0.3 ms, about 1% of a small model's forward.
    """
    with _NAMES_LOCK:
        names = _NAMES.get(model)
        if names is None:
            names = {id(m): n for n, m in model.named_modules()}
            _NAMES[model] = names
        return names


def current() -> Recorder | None:
    """The recorder of the running call, or None when nobody is recording."""
    return _CURRENT.get()


@contextmanager
def recording(recorder: Recorder, *, finish: bool = True) -> Iterator[Recorder]:
    """Make ``recorder`` the current one for the block; then run its deferred work, unless
    ``finish`` is False and the caller runs it (``Recorder.finish_in_background``)."""
    token = _CURRENT.set(recorder)
    try:
        yield recorder
    finally:
        _CURRENT.reset(token)
    if finish:
        recorder.finish()


def record(
    module: nn.Module, module_kind: str, kind: str, tensor: torch.Tensor, **meta: Any
) -> None:
    """Called by attention modules: report a tensor if someone is recording, else do nothing."""
    rec = _CURRENT.get()
    if rec is not None:
        rec.add(module, module_kind, kind, tensor, **meta)


def bypassed(module: nn.Module) -> bool:
    """True when the current call asked for this module to act as identity (ablation)."""
    rec = _CURRENT.get()
    return rec is not None and rec.is_disabled(module)


_STAGE_PATTERNS = (
    re.compile(r"(?:^|\.)layer(\d+)(?:\.|$)"),
    re.compile(r"(?:^|\.)blocks\.(\d+)(?:\.|$)"),
    re.compile(r"(?:^|\.)features\.(\d+)(?:\.|$)"),
    re.compile(r"(?:^|\.)block(\d+)(?:\.|$)"),
    re.compile(r"(?:^|\.)stages\.(\d+)(?:\.|$)"),
    re.compile(r"(?:^|\.)s(\d+)(?:\.|$)"),
)


def stage_of(layer: str) -> int:
    """Best-effort stage number from a layer path (``layer3.1.bn3.1`` -> 3); -1 when unknown."""
    for pattern in _STAGE_PATTERNS:
        m = pattern.search(layer)
        if m:
            return int(m.group(1))
    return -1
