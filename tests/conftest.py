"""Test-wide guarantees: no network, no GPU assumptions, a quiet torch."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Set before anything imports attnviz: nothing may be downloaded during tests.
os.environ["ATTNVIZ_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
# Keep a developer's real weight caches out of the tests: online sources are tested with
# weights the tests write into these empty caches.
os.environ["TORCH_HOME"] = tempfile.mkdtemp(prefix="attnviz-torch-home-")
os.environ["HF_HUB_CACHE"] = tempfile.mkdtemp(prefix="attnviz-hf-cache-")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny networks: one thread is faster than a pool contended by other work. Modules of
    tiny-network tests opt in with ``pytestmark = pytest.mark.usefixtures(...)``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def write_hub_weights():
    """Put a state dict where huggingface_hub's (test-private) cache serves a repo's
    ``model.safetensors`` from, as a finished download would: timm sources are tested with
    weights written here instead of fetched."""
    from huggingface_hub import constants

    from attnviz.checkpoints import save_safetensors

    def write(repo: str, state_dict: dict, revision: str = "0" * 40) -> Path:
        folder = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
        snap = folder / "snapshots" / revision
        snap.mkdir(parents=True, exist_ok=True)
        (folder / "refs").mkdir(exist_ok=True)
        (folder / "refs" / "main").write_text(revision)
        save_safetensors(state_dict, snap / "model.safetensors")
        return folder

    return write


@pytest.fixture(scope="session")
def default_model():
    """The offline default model, loaded once per session and shared, as in the app."""
    from attnviz import load_model

    return load_model(device="cpu")


@pytest.fixture(scope="session")
def samples():
    """Sample photo stem -> path (chelsea, coffee, ...), straight from assets/samples."""
    folder = Path(__file__).resolve().parents[1] / "assets" / "samples"
    return {p.stem: p for p in sorted(folder.glob("*.jpg"))}


@pytest.fixture
def network_passes():
    """Counts network passes during a test: one entry per ``analyze_batch`` call, its batch
    size. Display changes in the app must leave it unchanged."""
    from attnviz import analysis as analysis_module

    passes: list[int] = []
    real = analysis_module.analyze_batch

    def counting(images, model, **kwargs):
        passes.append(len(images))
        return real(images, model, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(analysis_module, "analyze_batch", counting)
        yield passes
