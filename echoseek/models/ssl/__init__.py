"""Self-supervised joint-embedding methods, one per file, and the table a pretraining config's
``method`` names (:data:`METHODS`). Every method is an :class:`~echoseek.models.ssl.base.SSLMethod`.
"""

from __future__ import annotations

from typing import Any

from echoseek.errors import ConfigError
from echoseek.models.backbones import ResNetBackbone
from echoseek.models.ssl.barlow import BarlowTwins
from echoseek.models.ssl.base import SSLMethod
from echoseek.models.ssl.byol import BYOL
from echoseek.models.ssl.instdisc import InstDisc
from echoseek.models.ssl.simclr import SimCLR
from echoseek.models.ssl.simsiam import SimSiam

METHODS: dict[str, type[SSLMethod]] = {
    "simsiam": SimSiam,
    "byol": BYOL,
    "barlow": BarlowTwins,
    "simclr": SimCLR,
    "instdisc": InstDisc,
}


def build_method(name: str, backbone: ResNetBackbone, **kwargs: Any) -> SSLMethod:
    """``METHODS[name](backbone, **kwargs)``; unknown names or options raise ConfigError.

    >>> from echoseek.models import build_backbone
    >>> build_method("simsiam", build_backbone("resnet18"), dim=256).predictor[-1].out_features
    256
    """
    if name not in METHODS:
        raise ConfigError(f"method: unknown '{name}' (known: {', '.join(METHODS)})")
    try:
        return METHODS[name](backbone, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"method '{name}': {exc}") from None
