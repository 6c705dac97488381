"""Boundary checks shared by the OPE modules: array coercion and row-wise error messages.

Every public function in :mod:`banditrec.ope` funnels its inputs through these helpers, so a bad
table fails in one place with a message that names the argument, the shapes and the first
offending row.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "as_bool_array",
    "as_float_array",
    "as_int_array",
    "check_distribution",
    "describe_bad",
    "read_only",
    "require_shape",
]

#: Tolerance on "sums to one" for every probability table in the package.
SUM_TOL = 1e-6


def read_only(array: np.ndarray) -> np.ndarray:
    """``array`` frozen: a read-only copy if it is writable, else a view (no copy).

    Copying writable input means a caller cannot change a validated table afterwards; arrays
    that are already read-only (broadcast views, slices of another log) are shared, which keeps
    slicing and large simulator logs cheap.
    """
    frozen = array.copy() if array.flags.writeable else array.view()
    frozen.flags.writeable = False
    return frozen


def _coerce(value: Any, name: str) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor (one that requires grad too)
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:  # ragged lists and the like
        raise TypeError(f"{name} must be array-like, got {type(value).__name__}: {exc}") from None
    if array.dtype == object:
        raise TypeError(f"{name} must be a numeric array, got dtype object (ragged or mixed values?)")
    return array


def _check_ndim(array: np.ndarray, name: str, ndim: int | None, shape_hint: str | None) -> None:
    if ndim is not None and array.ndim != ndim:
        hint = f" {shape_hint}" if shape_hint else ""
        raise ValueError(f"{name} must be {ndim}-dimensional{hint}, got shape {array.shape}")


def as_float_array(
    value: Any, name: str, ndim: int | None = None, shape_hint: str | None = None
) -> np.ndarray:
    """``value`` as float64 (no copy when it already is), with a TypeError/ValueError naming ``name``."""
    array = _coerce(value, name)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    _check_ndim(array, name, ndim, shape_hint)
    return array.astype(np.float64, copy=False)


def as_int_array(value: Any, name: str, ndim: int | None = None, shape_hint: str | None = None) -> np.ndarray:
    """``value`` as int64; floats are accepted only when every value is a whole number."""
    array = _coerce(value, name)
    if array.dtype.kind == "f":
        finite = np.isfinite(array)
        if not finite.all() or np.any(array[finite] != np.round(array[finite])):
            bad = ~finite | (array != np.round(np.where(finite, array, 0.0)))
            raise TypeError(
                f"{name} must hold integers, got dtype {array.dtype} with {describe_bad(bad, array)}"
            )
    elif array.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {array.dtype}")
    # The cast wraps (uint64 2**64 - 1 became -1) or saturates (1e20 became -2**63), and the
    # range checks after it then quoted a value the caller never passed.
    if array.dtype.kind == "u":
        huge = array > np.iinfo(np.int64).max
    elif array.dtype.kind == "f":
        huge = np.abs(array) >= 2.0**63
    else:
        huge = np.zeros(array.shape, dtype=bool)
    _check_ndim(array, name, ndim, shape_hint)
    if huge.any():
        where = describe_bad(huge, array) if array.ndim else f"value {array.item()!r}"
        raise ValueError(f"{name} must fit in a 64-bit signed integer; too large in {where}")
    return array.astype(np.int64, copy=False)


def as_bool_array(
    value: Any, name: str, ndim: int | None = None, shape_hint: str | None = None
) -> np.ndarray:
    """``value`` as bool; integer arrays must hold only 0 and 1."""
    array = _coerce(value, name)
    if array.dtype.kind in "iuf":
        if not np.isin(array, (0, 1)).all():
            raise ValueError(f"{name} must hold booleans or 0/1, got values {np.unique(array)[:10]}")
    elif array.dtype.kind != "b":
        raise TypeError(f"{name} must hold booleans, got dtype {array.dtype}")
    _check_ndim(array, name, ndim, shape_hint)
    return array.astype(bool, copy=False)


def require_shape(array: np.ndarray, name: str, expected: tuple[int | None, ...], reference: str) -> None:
    """Raise ValueError unless ``array.shape`` matches ``expected`` (None = any size)."""
    ok = array.ndim == len(expected) and all(e is None or s == e for s, e in zip(array.shape, expected))
    if not ok:
        want = (
            "("
            + ", ".join("?" if e is None else str(e) for e in expected)
            + ("," if len(expected) == 1 else "")
            + ")"
        )
        raise ValueError(f"{name} has shape {array.shape}, expected {want} to agree with {reference}")


def describe_bad(bad: np.ndarray, values: np.ndarray) -> str:
    """``"3 row(s), first at index 7 (value 0.0)"`` for a boolean ``bad`` over the leading axis.

    ``bad`` may be (n,) or (n, K); for the latter the slot is named too.
    """
    idx = np.argwhere(bad)
    first = tuple(int(i) for i in idx[0])
    rows = np.unique(idx[:, 0]).size
    where = f"index {first[0]}" if len(first) == 1 else f"row {first[0]}, slot {first[1]}"
    value = values[first]
    # 10 significant digits: shows 0.9 rather than 0.8999999999999999, keeps 1e-15 visible.
    shown = repr(float(f"{value:.10g}")) if isinstance(value, (float, np.floating)) else repr(value.item())
    return f"{rows} row(s), first at {where} (value {shown})"


#: Entries of a probability table this far below 0 are taken as rounding (and read as 0).
NEGATIVE_TOL = 1e-12


def check_distribution(dist: np.ndarray, mask: np.ndarray, name: str) -> None:
    """Check that ``dist`` (n, K) is a probability table over the valid slots of ``mask`` (n, K).

    Raises ValueError for non-finite or negative entries, mass on masked slots, and rows whose
    valid entries do not sum to 1 within ``SUM_TOL``.
    """
    if not np.isfinite(dist).all():
        raise ValueError(
            f"{name} must be finite; non-finite entries in {describe_bad(~np.isfinite(dist), dist)}"
        )
    if (dist < -NEGATIVE_TOL).any():  # -1e-17 from 1 - sum(others) is rounding, not a negative probability
        bad = dist < -NEGATIVE_TOL
        raise ValueError(f"{name} must be non-negative; negative entries in {describe_bad(bad, dist)}")
    on_masked = ~mask & (dist > 0)
    if on_masked.any():
        raise ValueError(
            f"{name} puts probability on masked (invalid) candidate slots in {describe_bad(on_masked, dist)}; "
            "it must be zero where mask is False"
        )
    sums = np.where(mask, dist, 0.0).sum(axis=1)
    off = np.abs(sums - 1.0) > SUM_TOL
    if off.any():
        raise ValueError(
            f"{name} rows must sum to 1 over the valid candidates (tolerance {SUM_TOL:g}); "
            f"rows that do not: {describe_bad(off, sums)}"
        )
