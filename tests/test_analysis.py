"""The analysis API on the real offline default model."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
import torch

from attnviz import analyze, analyze_batch
from attnviz.errors import SettingsError
from attnviz.inputs import load_image
from attnviz.recorder import Recorder, recording


@pytest.fixture(scope="module")
def cat(samples):
    return load_image(samples["chelsea"]).array


@pytest.fixture(scope="module")
def coffee(samples):
    return load_image(samples["coffee"]).array


def test_efficientnet_lite0_classifies_the_sample_photos(default_model, cat, coffee):
    a_cat = analyze(cat, default_model, cam_methods=())
    a_coffee = analyze(coffee, default_model, cam_methods=())
    assert "cat" in a_cat.predictions[0].label.lower()
    assert a_coffee.predictions[0].label == "espresso"
    assert len(a_cat.predictions) == 5
    probs = [p.probability for p in a_cat.predictions]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6


def test_records_cover_every_probe_layer_with_valid_energy(default_model, cat):
    a = analyze(cat, default_model, cam_methods=())
    energy = a.by_kind("energy")
    assert [r.layer for r in energy] == list(default_model.probe_layers)
    assert len(energy) == 16
    for r in energy:
        assert r.module == "simam-probe" and r.data.ndim == 3
        assert np.isfinite(r.data).all() and (r.data >= 0.5 - 1e-6).all()  # E_inv >= 1/2
        assert r.stage >= 0


def test_simam_probe_leaves_logits_bit_identical(default_model, cat):
    x = default_model.preprocessing.to_tensor([cat])
    with torch.no_grad():
        plain = default_model.model(x)
        rec = Recorder(default_model.model,
                       probe_layers={p: 1e-4 for p in default_model.probe_layers})
        with recording(rec):
            probed = default_model.model(x)
    assert len(rec.records) == len(default_model.probe_layers)
    assert torch.equal(plain, probed)


def test_analysis_logits_match_a_bare_forward(default_model, cat):
    a = analyze(cat, default_model, cam_methods=("gradcam",))
    with torch.no_grad():
        bare = default_model.model(default_model.preprocessing.to_tensor([cat]))[0].numpy()
    np.testing.assert_allclose(a.logits, bare, rtol=1e-5, atol=1e-5)


def test_cam_defaults_to_top1_and_accepts_names_and_indices(default_model, coffee):
    a = analyze(coffee, default_model, cam_methods=("gradcam",))
    assert a.target == a.predictions[0].index and a.target_label == "espresso"
    cam = a.cams["gradcam"]
    assert cam.shape == (224, 224) and cam.min() >= 0 and cam.max() <= 1.0 + 1e-6
    b = analyze(coffee, default_model, cam_methods=("gradcam",), target="cup")
    assert b.target_label == "cup"
    c = analyze(coffee, default_model, cam_methods=("gradcam",), target=968)
    assert c.target == 968
    assert not np.allclose(a.cams["gradcam"], b.cams["gradcam"])


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"cam_methods": ("gradkam",)}, "valid choices: gradcam"),
        ({"target": 1000}, "out of range"),
        ({"target": -1}, "out of range"),
        ({"target": "not a class"}, "unknown class name"),
        ({"cam_layer": "no.such.layer"}, "does not exist"),
        ({"probe_layers": ["blocks.99"]}, "does not exist"),
        ({"disabled": ["conv_stem"]}, "not an attention layer"),
    ],
)
def test_bad_settings_are_clear_errors(default_model, cat, kwargs, fragment):
    with pytest.raises(SettingsError, match=fragment):
        analyze(cat, default_model, **kwargs)


def test_probe_any_layer_with_a_chosen_lambda(default_model, cat):
    a = analyze(cat, default_model, cam_methods=(), probe_layers=["conv_head"],
                simam_lambda=0.1)
    (rec,) = a.by_kind("energy")
    assert rec.layer == "conv_head" and rec.data.shape == (1280, 7, 7)


def test_batch_equals_single_analyses(default_model, cat, coffee):
    batch = analyze_batch([cat, coffee], default_model, cam_methods=("gradcam",))
    singles = [analyze(im, default_model, cam_methods=("gradcam",)) for im in (cat, coffee)]
    for b, s in zip(batch, singles, strict=True):
        assert [p.index for p in b.predictions] == [p.index for p in s.predictions]
        np.testing.assert_allclose(b.cams["gradcam"], s.cams["gradcam"], atol=1e-4)
        for rb, rs in zip(b.records, s.records, strict=True):
            assert rb.layer == rs.layer
            np.testing.assert_allclose(rb.data, rs.data, rtol=1e-4, atol=1e-4)


def test_two_threads_on_one_shared_model_get_their_own_maps(default_model, cat, coffee):
    serial = {name: analyze(im, default_model) for name, im in (("cat", cat), ("coffee", coffee))}
    results: dict[str, list] = {"cat": [], "coffee": []}
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def worker(name, image):
        try:
            barrier.wait()
            for _ in range(3):
                results[name].append(analyze(image, default_model))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n, im))
               for n, im in (("cat", cat), ("coffee", coffee))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors
    for name, runs in results.items():
        assert len(runs) == 3
        for run in runs:
            ref = serial[name]
            assert run.predictions[0].index == ref.predictions[0].index
            assert len(run.records) == len(ref.records)
            for got, want in zip(run.records, ref.records, strict=True):
                np.testing.assert_allclose(got.data, want.data, rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(run.cams["gradcam"], ref.cams["gradcam"], atol=1e-3)
    assert serial["cat"].predictions[0].index != serial["coffee"].predictions[0].index


def test_summary_is_json_ready(default_model, cat):
    import json

    s = analyze(cat, default_model).summary()
    text = json.dumps(s)
    assert s["model"] == default_model.id and len(s["top5"]) == 5
    assert len(s["layers"]) == 16 and "gradcam" in text
    assert s["timings_s"].keys() >= {"forward", "cam", "cam:gradcam", "total"}


def test_probe_energy_equals_the_simam_module_formula():
    from attnviz.attention.probe import probe_energy
    from attnviz.attention.simam import simam_energy

    torch.manual_seed(0)
    for shape in [(2, 3, 7, 5), (1, 4, 1, 9), (1, 2, 1, 1), (1, 8, 56, 56)]:
        x = torch.randn(shape) * 3 + 1
        for lam in (1e-4, 0.1):
            torch.testing.assert_close(probe_energy(x, lam), simam_energy(x, lam),
                                       rtol=1e-4, atol=1e-5)
    # Foreign models may hand the probe channels-last or strided outputs.
    x = torch.randn(2, 6, 9, 11).contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(probe_energy(x, 1e-4), simam_energy(x, 1e-4), rtol=1e-4, atol=1e-5)
    x = torch.randn(1, 6, 9, 22)[..., ::2]
    torch.testing.assert_close(probe_energy(x, 1e-4), simam_energy(x, 1e-4), rtol=1e-4, atol=1e-5)


def _probe_pass(model, x, layer="0", lam=0.1):
    rec = Recorder(model, probe_layers={layer: lam})
    with torch.no_grad(), recording(rec):
        model(x)
    (record,) = rec.records
    return rec, record


def _probe_hook(model, layer="0"):
    handle = model._attnviz_hooks[f"probe:{layer}"]
    return handle.hooks_dict_ref()[handle.id]


def test_probe_sees_the_layer_output_before_later_in_place_ops():
    """A layer whose output a later in-place ReLU overwrites: the probe learns that on its
    first pass and keeps copying, so every pass sees the output as the layer gave it."""
    from torch import nn

    from attnviz.attention.probe import install_simam_probe
    from attnviz.attention.simam import simam_energy

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.Conv2d(4, 2, 1)).eval()
    install_simam_probe(model, "0")
    x = torch.randn(2, 3, 9, 9)
    with torch.no_grad():
        before_relu = model[0](x)
    for _ in range(3):
        rec, record = _probe_pass(model, x)
        assert record.layer == "0" and record.kind == "energy" and not rec.stale
        torch.testing.assert_close(record.tensor, simam_energy(before_relu, 0.1))
    assert _probe_hook(model).overwritten is True


def test_probe_keeps_a_reference_where_nothing_overwrites_the_output():
    """No copy during the forward pass once the probe knows nothing writes over the layer's
    output: the record holds the output itself until the energy replaces it."""
    from torch import nn

    from attnviz.attention.probe import install_simam_probe
    from attnviz.attention.simam import simam_energy

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1)).eval()
    install_simam_probe(model, "0")
    x = torch.randn(2, 3, 9, 9)
    with torch.no_grad():
        expected = simam_energy(model[0](x), 0.1)
    outputs = []
    model[0].register_forward_hook(lambda _m, _i, out: outputs.append(out.data_ptr()))
    _probe_pass(model, x)
    assert _probe_hook(model).overwritten is False
    rec = Recorder(model, probe_layers={"0": 0.1})
    with torch.no_grad():
        with recording(rec):
            model(x)
            assert rec.records[0].tensor.data_ptr() == outputs[-1]  # the output, not a copy
    torch.testing.assert_close(rec.records[0].tensor, expected)


class _SometimesInPlace(torch.nn.Module):
    """Overwrites its input only when told to: data-dependent, so no single pass reveals it."""

    def __init__(self) -> None:
        super().__init__()
        self.overwrite = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp_(min=0) if self.overwrite else x.clamp(min=0)


def test_analysis_runs_again_when_a_referenced_output_was_overwritten(default_model, cat):
    """The probe kept a reference (its first pass saw nothing overwrite the output); when a
    later pass overwrites it after all, the records are stale and the analysis runs the pass
    again, copying: the energy is still that of the layer's own output."""
    import dataclasses

    from torch import nn

    from attnviz.attention.simam import simam_energy

    torch.manual_seed(0)
    tiny = nn.Sequential(nn.Conv2d(3, 4, 5, stride=8), _SometimesInPlace(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1000)).eval()
    loaded = dataclasses.replace(default_model, model=tiny, cam_layer="0", probe_layers=(),
                                 attention=())
    passes = []
    tiny[0].register_forward_hook(lambda _m, _i, out: passes.append(out.detach().clone()))
    analyze(cat, loaded, cam_methods=(), probe_layers=["0"])
    assert _probe_hook(tiny).overwritten is False and len(passes) == 1
    tiny[1].overwrite = True
    a = analyze(cat, loaded, cam_methods=(), probe_layers=["0"])
    assert len(passes) == 3 and _probe_hook(tiny).overwritten is True
    (record,) = a.records
    assert (passes[-1] < 0).any()  # there were negatives for the in-place clamp to remove
    expected = simam_energy(passes[-1], 1e-4)[0].numpy()
    np.testing.assert_allclose(record.data, expected, rtol=1e-4, atol=1e-5)


def test_deferred_work_runs_on_a_worker_thread_on_cpu_and_here_elsewhere():
    """On CPU the energies overlap the CAM step on a worker thread; on an accelerator they are
    queued from the caller's thread, on its stream."""
    seen: list[str] = []
    for device in ("cpu", "cuda"):  # only the device type is read: no GPU needed
        rec = Recorder()
        rec.defer(lambda: seen.append(threading.current_thread().name))
        rec.finish_in_background(torch.device(device)).result(timeout=30)
    assert seen[0].startswith("attnviz-finish")
    assert seen[1] == threading.current_thread().name


def test_analysis_waits_for_slow_energies(default_model, cat, monkeypatch):
    """The records an analysis returns are the energies, however long the worker takes: the
    analysis waits for it before it reads them."""
    import time

    import attnviz.attention.probe as probe
    from attnviz.attention.simam import simam_energy

    layer = default_model.probe_layers[0]
    analyze(cat, default_model)  # the probes have learnt to keep references
    outputs = []
    module = dict(default_model.model.named_modules())[layer]
    handle = module.register_forward_hook(lambda _m, _i, out: outputs.append(out.clone()))
    original = probe.finish_energy

    def slow(y):
        time.sleep(0.3)
        return original(y)

    monkeypatch.setattr(probe, "finish_energy", slow)
    try:
        a = analyze(cat, default_model)
    finally:
        handle.remove()
    expected = simam_energy(outputs[-1], 1e-4)[0].numpy()
    (record,) = [r for r in a.records if r.layer == layer]
    np.testing.assert_allclose(record.data, expected, rtol=1e-4, atol=1e-5)
    assert a.timings["observe_wait"] >= 0.3  # the wait is timed, not the moment after it


def test_an_error_in_the_energies_reaches_the_caller_and_the_model_still_works(
        default_model, cat, monkeypatch):
    import attnviz.attention.probe as probe

    analyze(cat, default_model)

    def broken(_y):
        raise RuntimeError("energy failed")

    with monkeypatch.context() as patch:
        patch.setattr(probe, "finish_energy", broken)
        with pytest.raises(RuntimeError, match="energy failed"):
            analyze(cat, default_model)
    a = analyze(cat, default_model)
    assert a.records and all(np.isfinite(r.data).all() for r in a.records)


def _finish_in_a_forked_child() -> None:
    rec = Recorder()
    done: list[bool] = []
    rec.defer(lambda: done.append(True))
    rec.finish_in_background(torch.device("cpu")).result(timeout=20)
    raise SystemExit(0 if done == [True] else 3)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_a_forked_child_gets_its_own_worker_thread():
    """A forked child inherits the pool but not its threads: without a fresh pool, deferred
    work submitted there would wait for a worker that does not exist."""
    import multiprocessing

    Recorder().finish_in_background(torch.device("cpu")).result(timeout=20)  # pool started
    child = multiprocessing.get_context("fork").Process(target=_finish_in_a_forked_child)
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        child.join()
        pytest.fail("the deferred work never ran in the forked child")
    assert child.exitcode == 0
