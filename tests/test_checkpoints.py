"""Weights files are untrusted input: they must be read without running code, and a mismatch
must be reported by key name, since "size mismatch" alone does not tell a user what to fix."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from attnviz.checkpoints import (
    check_finite,
    load_strict,
    read_state_dict,
    save_safetensors,
    strip_prefix,
)
from attnviz.errors import CheckpointError


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)


class _MakesMarker:
    """Unpickling this would create a file: the test asserts it never appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def _sd() -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in _Tiny().state_dict().items()}


def _pth_bytes(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.mark.parametrize("raw", [False, True], ids=["torch-save", "raw-pickle"])
def test_malicious_pickle_refused_and_not_run(tmp_path: Path, raw: bool) -> None:
    marker = tmp_path / "pwned"
    evil = {"state_dict": {"w": torch.zeros(2), "x": _MakesMarker(marker)}}
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps(evil, protocol=2) if raw else _pth_bytes(evil))
    with pytest.raises(CheckpointError, match="refused") as info:
        read_state_dict(path)
    assert "evil.pth" in str(info.value)
    assert "other than tensors" in str(info.value)
    assert not marker.exists()


def test_malicious_upload_bytes_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    data = _pth_bytes({"x": _MakesMarker(marker)})
    with pytest.raises(CheckpointError, match="refused"):
        read_state_dict(io.BytesIO(data), name="upload.pth")
    assert not marker.exists()


def test_truncated_pth(tmp_path: Path) -> None:
    data = _pth_bytes(_sd())
    path = tmp_path / "cut.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pth.*truncated or corrupt"):
        read_state_dict(path)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_zero_byte_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        read_state_dict(path)


def test_safetensors_garbage_header(tmp_path: Path) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes((16).to_bytes(8, "little") + b"{garbage header}")
    with pytest.raises(CheckpointError, match=r"bad\.safetensors.*not a valid safetensors"):
        read_state_dict(path)


def test_safetensors_truncated(tmp_path: Path) -> None:
    path = tmp_path / "ok.safetensors"
    save_file({"a": torch.ones(64)}, str(path))
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(CheckpointError, match="cut.safetensors"):
        read_state_dict(cut)


def test_unknown_extension_lists_supported(tmp_path: Path) -> None:
    path = tmp_path / "weights.h5"
    path.write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"\.safetensors.*\.pth"):
        read_state_dict(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        read_state_dict(tmp_path / "nope.pth")


@pytest.mark.parametrize("wrapper", ["state_dict", "model", "model_state_dict"])
def test_training_checkpoint_unwrapped(tmp_path: Path, wrapper: str) -> None:
    sd = _sd()
    path = tmp_path / "checkpoint.pth.tar"
    path.write_bytes(_pth_bytes({"epoch": 90, "arch": "resnet50", wrapper: sd}))
    got = read_state_dict(path)
    assert got.keys() == sd.keys()


def test_non_tensor_entries_refused(tmp_path: Path) -> None:
    path = tmp_path / "odd.pt"
    path.write_bytes(_pth_bytes({"a": torch.zeros(1), "b": 3}))
    with pytest.raises(CheckpointError, match="not tensors"):
        read_state_dict(path)


def test_bytes_input_needs_and_uses_name() -> None:
    data = _pth_bytes(_sd())
    assert read_state_dict(data, name="w.pth").keys() == _sd().keys()
    with pytest.raises(CheckpointError, match="file name"):
        read_state_dict(data)


def test_safetensors_round_trip(tmp_path: Path) -> None:
    model = _Tiny()
    path = save_safetensors(model, tmp_path / "sub" / "tiny.safetensors", {"attention": "se"})
    assert [p.name for p in path.parent.iterdir()] == ["tiny.safetensors"]  # no temp left
    sd = read_state_dict(path)
    fresh = _Tiny()
    load_strict(fresh, sd, source=str(path))
    for k, v in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        assert f.metadata() == {"attention": "se"}
    # bytes in, as an upload would arrive
    assert read_state_dict(path.read_bytes(), name="up.safetensors").keys() == sd.keys()


def test_save_shared_and_noncontiguous_tensors(tmp_path: Path) -> None:
    base = torch.arange(12.0).reshape(3, 4)
    sd = {"a": base, "tied": base, "t": base.t()}
    path = save_safetensors(sd, tmp_path / "s.safetensors")
    got = load_file(str(path))
    assert torch.equal(got["tied"], base) and torch.equal(got["t"], base.t())


def test_strip_prefix_only_when_all_keys_have_it() -> None:
    sd = {"module.a": torch.zeros(1), "module.b": torch.zeros(1)}
    assert set(strip_prefix(sd)) == {"a", "b"}
    mixed = {"module.a": torch.zeros(1), "b": torch.zeros(1)}
    assert strip_prefix(mixed) == mixed


def test_nan_weights_refused_naming_key() -> None:
    sd = _sd()
    sd["conv.weight"][0, 0, 0, 0] = float("nan")
    sd["fc.bias"][0] = float("inf")
    with pytest.raises(CheckpointError, match=r"conv\.weight.*fc\.bias"):
        check_finite(sd)
    with pytest.raises(CheckpointError, match=r"NaN"):
        load_strict(_Tiny(), sd, source="nan.pth")


def test_load_strict_reports_missing_unexpected_and_shapes() -> None:
    sd = _sd()
    sd["fc.renamed"] = sd.pop("fc.weight")
    sd["conv.bias"] = torch.zeros(5)
    with pytest.raises(CheckpointError) as info:
        load_strict(_Tiny(), sd, source="bad.pth")
    msg = str(info.value)
    assert "bad.pth" in msg
    assert "missing" in msg and "fc.weight" in msg
    assert "unexpected" in msg and "fc.renamed" in msg
    assert "conv.bias: file 5 vs model 4" in msg


def test_load_strict_lists_at_most_ten_with_count() -> None:
    sd = {f"junk{i}": torch.zeros(1) for i in range(25)}
    with pytest.raises(CheckpointError, match=r"25 unexpected keys .*and 15 more"):
        load_strict(_Tiny(), {**_sd(), **sd}, source="x")


def test_legacy_file_without_batch_counters_loads() -> None:
    # Files from before PyTorch 0.4.1 (torchvision's ImageNet ones too) have no counters.
    sd = {k: v for k, v in _sd().items() if not k.endswith("num_batches_tracked")}
    load_strict(_Tiny(), {"module." + k: v for k, v in sd.items()}, source="old.pth")


def test_partial_batch_counters_reported() -> None:
    model = nn.Sequential(nn.BatchNorm2d(2), nn.BatchNorm2d(2))
    sd = {k: v.clone() for k, v in model.state_dict().items() if k != "1.num_batches_tracked"}
    with pytest.raises(CheckpointError, match=r"1\.num_batches_tracked"):
        load_strict(model, sd, source="x")


def test_no_temp_files_in_cwd(tmp_path: Path) -> None:
    before = set(os.listdir(tmp_path))
    with pytest.raises(CheckpointError):
        save_safetensors({"a": torch.zeros(1)}, tmp_path / "m.safetensors", {"n": 3})  # type: ignore[dict-item]
    assert set(os.listdir(tmp_path)) == before


def test_saved_weights_get_the_usual_file_mode(tmp_path):
    """Atomic, and readable as any other file the user writes: mode 0o666 less the umask."""
    import os

    old = os.umask(0o022)
    try:
        path = save_safetensors({"a": torch.zeros(1)}, tmp_path / "w.safetensors")
        os.umask(0o077)
        private = save_safetensors({"a": torch.zeros(1)}, tmp_path / "p.safetensors")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
    assert private.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.safetensors", "w.safetensors"]
