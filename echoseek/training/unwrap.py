"""The plain model inside DDP / DataParallel and ``torch.compile`` wrappers."""

from __future__ import annotations

from torch import nn

_WRAPPED_ATTRS = ("module", "_orig_mod")  # DDP/DataParallel, torch.compile's OptimizedModule


def unwrap_model(model: nn.Module) -> nn.Module:
    """Strip wrappers until the model itself: its state dict and parameter names are plain.

    A wrapper is a module whose only child is its ``.module`` (DistributedDataParallel,
    DataParallel) or ``._orig_mod`` (``torch.compile``); wrappers may be nested in any order.
    The parameters are the same objects, so an optimizer built on either sees the same tensors.
    """
    while True:
        children = list(model.children())
        inner = next(
            (
                getattr(model, a)
                for a in _WRAPPED_ATTRS
                if isinstance(getattr(model, a, None), nn.Module)
            ),
            None,
        )
        if inner is None or len(children) != 1 or children[0] is not inner:
            return model
        model = inner
