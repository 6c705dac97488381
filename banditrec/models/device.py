"""Where models run: ``device="auto"`` means CUDA when present, else the CPU."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["resolve_device", "torch_threads"]

_SUPPORTED = ("cpu", "cuda", "mps")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn a device request into a :class:`torch.device`.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda", "cuda:N", "mps"} or torch.device
        ``"auto"`` picks CUDA when available, else the CPU.

    Raises
    ------
    ValueError
        For an unknown device string, or a CUDA device requested on a machine without CUDA.
    """
    if isinstance(device, torch.device):
        resolved = device
    elif isinstance(device, str):
        if device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            resolved = torch.device(device)
        except RuntimeError:
            raise ValueError(
                f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N' (or a torch.device)"
            ) from None
    else:
        raise TypeError(f"device must be a string or a torch.device, got {type(device).__name__}: {device!r}")
    if resolved.type not in _SUPPORTED:
        raise ValueError(
            f"unsupported device {device!r}; use one of 'auto', {', '.join(map(repr, _SUPPORTED))}"
        )
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} requested but MPS is not available here; use 'auto' or 'cpu'")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r} requested but CUDA is not available here; use 'auto' or 'cpu'"
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r} requested but only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
    return resolved


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run torch's CPU ops on ``n`` threads inside the block, then restore the setting (None, or 0
    as a TOML file can write it: leave it).

    Small networks run fastest on one thread: several threads spin-wait for each other, which on
    a busy machine can make a step ten times slower; one thread also sums in one order everywhere.
    The setting is process-wide, so other Python threads running torch meanwhile share it.
    """
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 0):
        raise ValueError(f"num_threads must be a positive int, or 0 or None to leave torch's setting, got {n!r}")
    previous = torch.get_num_threads()
    if not n or n == previous:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
