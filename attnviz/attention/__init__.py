"""Attention modules that report what they attend to, and a factory by name.

Every module follows one contract: when the current call disables it (``bypassed``) it is an
identity; otherwise it reports its maps to the current recorder (``record``) and never keeps
them as attributes, so one cached model can serve concurrent calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from attnviz.attention.bam import BAM, BAMChannelGate, BAMSpatialGate
from attnviz.attention.cbam import CAM, CBAM, SAM, ChannelGate, SpatialGate
from attnviz.attention.nonlocal_block import NonLocalBlock
from attnviz.attention.se import SE, SE_GATES
from attnviz.attention.simam import SimAM, simam_energy
from attnviz.attention.sssa import SSSA
from attnviz.attention.stn import SpatialTransformer
from attnviz.errors import SettingsError, choices_message

ATTENTION_KINDS = ("simam", "se", "cbam", "cam", "sam", "bam", "nonlocal", "stn", "sssa")

# Modules that do not depend on the channel count (SimAM) take no ``channels``; the STN's
# channels are those of its input image.
_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "simam": lambda channels, **kw: SimAM(**kw),
    "se": SE,
    "cbam": CBAM,
    "cam": CAM,
    "sam": SAM,
    "bam": BAM,
    "nonlocal": NonLocalBlock,
    "stn": lambda channels, **kw: SpatialTransformer(in_channels=channels, **kw),
    "sssa": SSSA,
}


def create_attention(kind: str, channels: int, **kwargs: Any) -> nn.Module:
    """Build an attention module by name; extra keyword arguments go to its constructor."""
    builder = _BUILDERS.get(kind)
    if builder is None:
        raise SettingsError(choices_message("attention module", kind, ATTENTION_KINDS))
    return builder(channels, **kwargs)


__all__ = [
    "ATTENTION_KINDS",
    "BAM",
    "CAM",
    "CBAM",
    "SAM",
    "SE",
    "SE_GATES",
    "SSSA",
    "BAMChannelGate",
    "BAMSpatialGate",
    "ChannelGate",
    "NonLocalBlock",
    "SimAM",
    "SpatialGate",
    "SpatialTransformer",
    "create_attention",
    "simam_energy",
]
