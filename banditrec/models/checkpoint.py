"""Model checkpoints: save the weights, load them back only into the same architecture."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["check_state_compatible", "load_model", "read_checkpoint", "save_model", "write_checkpoint"]

MODEL_FORMAT = "banditrec-model"  # the "format" entry of a save_model file (load_policy names it)
_VERSION = 1


def save_model(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``model``'s weights (and, for built-in models, their constructor config) to ``path``.

    The file holds only tensors and plain containers, so :func:`load_model` can read it with
    ``torch.load(..., weights_only=True)``. Returns the path written.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    path = Path(path)
    payload = {
        "format": MODEL_FORMAT,
        "version": _VERSION,
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "config": dict(getattr(model, "config", {}) or {}),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    if getattr(model, "banditrec_loss", None) is not None:  # what pretrain trained it with
        payload["loss"] = model.banditrec_loss
    return write_checkpoint(payload, path)


def write_checkpoint(payload: Any, path: Path) -> Path:
    """``torch.save`` to ``path`` atomically (a temporary file beside it, then a rename), creating
    its folder if needed: an interrupted save leaves the previous checkpoint, never half a file."""
    if path.is_dir():
        raise IsADirectoryError(f"cannot write a checkpoint to {path}: it is a directory; give a file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if isinstance(payload, dict):
        payload = {**payload, _DIGEST: payload_digest(payload)}
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_checkpoint(path: Path, map_location: Any, what: str, label: str | None = None) -> Any:
    """``torch.load(path, weights_only=True)``, or one ValueError line saying that ``path`` (shown
    as ``label``) is not ``what`` and why. Torch's own errors for a truncated or foreign file are
    a RuntimeError about a "zip archive", a ``KeyError: 101``, or a paragraph that suggests
    ``weights_only=False`` (which would run the file's code)."""
    label = str(path) if label is None else label
    try:  # is_zipfile itself raised BadZipFile on a flipped byte in the zip64 end record
        is_zip = zipfile.is_zipfile(path)
    except zipfile.BadZipFile:
        is_zip = False
    if not is_zip:  # torch.save writes zip archives; this one is cut short or foreign
        raise ValueError(
            f"{label} is not {what}: "
            "it is not a torch checkpoint archive (truncated, or another kind of file)"
        )
    try:  # torch.load does not check the archive's CRCs: flipped bytes would load as NaN weights
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except Exception as exc:  # noqa: BLE001 - any failure to read the archive is damage
        # A flipped byte in an entry's local header (its name length, say) made testzip raise a bare
        # EOFError; others raise BadZipFile, zlib.error, NotImplementedError, OSError...
        bad = f"({type(exc).__name__}{': ' + str(exc) if str(exc) else ''})"
    if bad is not None:
        raise ValueError(f"{label} is not {what}: it is damaged (entry {bad} fails its checksum)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for foreign or corrupt files
        text = str(exc)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        marks = ("Weights only load failed", "WeightsUnpickler error", "GLOBAL")
        if any(mark in text for mark in marks):
            # Keep only torch's cause: the rest advises weights_only=False, which would run the file's code.
            cause = next((line for line in lines if any(mark in line for mark in marks[1:])), None)
            reason = "it holds objects other than tensors and plain containers"
            if cause is not None:
                reason += f" ({cause})"
        else:
            reason = f"it is damaged ({lines[0][:200] if lines else type(exc).__name__})"
        raise ValueError(f"{label} is not {what}: {reason}") from exc
    if isinstance(payload, dict) and _DIGEST in payload:  # files written before it have none
        saved = payload.pop(_DIGEST)
        if saved != payload_digest(payload):
            raise ValueError(f"{label} is not {what}: it is damaged (its contents do not match their digest)")
    return payload


#: The key of a checkpoint's digest of its own contents. The archive's CRCs cover the entries'
#: bytes but not its directory: one flipped byte there loaded a tensor from uninitialised memory
#: (weights of 1e34) with every CRC intact.
_DIGEST = "_sha256"


def payload_digest(value: Any) -> str:
    """sha256 over a checkpoint's contents as loaded: every tensor's dtype, shape and bytes,
    every array's, every other value's repr, in key order."""
    digest = hashlib.sha256()

    def feed(item: Any) -> None:
        if isinstance(item, torch.Tensor):
            item = item.detach().cpu().contiguous()
            digest.update(f"T{item.dtype}{tuple(item.shape)}".encode())
            if item.numel():  # an empty tensor can have stride 0, which view(uint8) refuses
                digest.update(item.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(item, np.ndarray):
            digest.update(f"A{item.dtype}{item.shape}".encode())
            digest.update(np.ascontiguousarray(item).tobytes())
        elif isinstance(item, dict):
            digest.update(b"{")
            for key in sorted(item, key=repr):
                digest.update(repr(key).encode())
                feed(item[key])
            digest.update(b"}")
        elif isinstance(item, (list, tuple)):
            digest.update(b"[" if isinstance(item, list) else b"(")
            for element in item:
                feed(element)
            digest.update(b"]")
        else:
            digest.update(repr(item).encode())

    feed(value)
    return digest.hexdigest()


def check_state_compatible(
    model: nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint"
) -> None:
    """Raise a ValueError naming every missing, unexpected or differently shaped tensor."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: {source} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {missing}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected}")
        if shapes:
            parts.append("shape mismatches [" + "; ".join(shapes) + "]")
        raise ValueError(
            f"{source} does not fit {type(model).__name__} (a different architecture?): " + ", ".join(parts)
        )


def load_model(
    model: nn.Module, path: str | os.PathLike, map_location: str | torch.device | None = None
) -> nn.Module:
    """Load weights saved by :func:`save_model` into ``model`` (in place) and return it.

    The tensors go to the device ``model`` lives on unless ``map_location`` says otherwise.

    Raises
    ------
    ValueError
        If the file is not a banditrec model checkpoint, or if its tensors do not match the
        model's (the message names the missing/unexpected keys and mismatched shapes, and the
        class and config the checkpoint was saved from).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    if map_location is None:
        first = next(iter(model.state_dict().values()), None)
        map_location = first.device if first is not None else "cpu"
    else:  # an unusable device is the argument's fault, not the file's ("it is damaged" before)
        from banditrec.models.device import resolve_device

        try:
            map_location = resolve_device(map_location)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"map_location: {exc}") from None
    what = "a readable banditrec model checkpoint (written by save_model)"
    payload = read_checkpoint(path, map_location, what, label=repr(str(path)))
    if isinstance(payload, dict) and "n_decisions_" in payload:  # what save_policy writes
        raise ValueError(
            f"{str(path)!r} is a policy checkpoint (written by save_policy), not a model checkpoint; "
            "load it with banditrec.policies.load_policy"
        )
    if isinstance(payload, dict) and payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise ValueError(  # what torch.save(model.state_dict(), path) writes
            f"{str(path)!r} is not a banditrec model checkpoint (written by save_model) but a bare "
            "state_dict (torch.save(model.state_dict())), with no class or config to check; if it is this model's, use "
            "model.load_state_dict(torch.load(path, weights_only=True)), then save_model"
        )
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise ValueError(f"{str(path)!r} is not a banditrec model checkpoint (written by save_model)")
    if payload.get("version", 0) > _VERSION:
        raise ValueError(
            f"{str(path)!r} has checkpoint format version {payload['version']}; "
            f"this banditrec reads up to {_VERSION}"
        )
    state = payload.get("state_dict")
    if not isinstance(state, dict):  # a file's fault, reported as a ValueError like every other
        raise ValueError(  # noqa: TRY004
            f"{str(path)!r} lacks its tensors (no state_dict entry): damaged, or written by something else"
        )
    saved_class, saved_config = str(payload.get("class", "")), payload.get("config") or {}
    source = f"checkpoint {path.name} (saved from {saved_class} {saved_config})"
    check_state_compatible(model, state, source)  # names what differs in names and shapes first
    # Names and shapes can agree across architectures (an MLP over 3 user and 5 item features and
    # one over 5 and 3): the class and the built-in models' config must too.
    own_class = type(model).__qualname__
    if saved_class.rsplit(".", 1)[-1] != own_class:
        raise ValueError(f"{str(path)!r} holds a {saved_class.rsplit('.', 1)[-1]}, not a {own_class}")
    own_config = dict(getattr(model, "config", {}) or {})
    differ = {k: (saved_config.get(k), own_config.get(k)) for k in {*saved_config, *own_config}
              if k != "seed" and saved_config.get(k) != own_config.get(k)}
    if differ:
        raise ValueError(
            f"{str(path)!r} was saved from a {own_class} built otherwise (saved vs this model): "
            + ", ".join(f"{k}: {a!r} vs {b!r}" for k, (a, b) in sorted(differ.items()))
        )
    # load_state_dict casts silently: float64 weights loaded into a float32 model lost their low bits
    own_state = model.state_dict()
    dtypes = [f"{k}: {state[k].dtype} vs {own_state[k].dtype}" for k in sorted(state)
              if state[k].dtype != own_state[k].dtype]
    if dtypes:
        raise ValueError(
            f"{str(path)!r} holds tensors of other dtypes than this {own_class} (saved vs this model): "
            + "; ".join(dtypes) + "; convert the model first (e.g. model.double()) to load them exactly"
        )
    model.load_state_dict(state)
    if "loss" in payload:  # so that a policy given the reloaded model still checks its loss
        model.banditrec_loss = str(payload["loss"])
    elif hasattr(model, "banditrec_loss"):
        # These weights were not pretrained with a recorded loss: a loss left from the model's own
        # pretraining would make a policy accept (or refuse) them for the wrong reason.
        del model.banditrec_loss
    return model
