"""argparse types shared by the benchmark scripts (not part of the package).

Each one turns an option's text into its value or raises ``argparse.ArgumentTypeError``, so that
a value that makes no sense (a count of 0, an unknown engine, a δ outside the wheel's range, a
CUDA device on a machine without one) ends the script before anything runs, with argparse's
one-line ``error: argument --NAME: ...`` and exit status 2, instead of a traceback from deep
inside a benchmark or a table of nonsense. The messages follow ``banditrec``'s own command line
(``banditrec/cli.py``: "expected a positive integer, got 0").
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any


def _int(text: str, wanted: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None


def positive_int(text: str) -> int:
    """A count: an int >= 1."""
    value = _int(text, "a positive integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def nonnegative_int(text: str) -> int:
    """An int >= 0."""
    value = _int(text, "an integer >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def real(low: float | None = None, high: float | None = None, *, open_low: bool = False,
         open_high: bool = True) -> Callable[[str], float]:
    """A finite float within [low, high) (``open_low``: (low, …; ``open_high=False``: …, high])."""
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if open_low else '>='} {low:g}")
    if high is not None:
        bounds.append(f"{'<' if open_high else '<='} {high:g}")
    wanted = "a finite number" + (" " + " and ".join(bounds) if bounds else "")

    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        if (not math.isfinite(value)
                or (low is not None and (value <= low if open_low else value < low))
                or (high is not None and (value >= high if open_high else value > high))):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return value

    convert.__name__ = "number"
    return convert


def comma_list(item: Callable[[str], Any], *, allow_empty: bool = False, unique: bool = True,
               what: str = "items") -> Callable[[str], list[Any]]:
    """A comma-separated list whose entries each pass ``item`` (an argparse type); empty only with
    ``allow_empty``, and without repeats when ``unique`` (a repeated row would be timed twice)."""

    def convert(text: str) -> list[Any]:
        parts = [part.strip() for part in text.split(",")] if text.strip() else []
        if not parts and not allow_empty:
            raise argparse.ArgumentTypeError(f"expected one or more comma-separated {what}, got {text!r}")
        values = []
        for part in parts:
            if not part:
                raise argparse.ArgumentTypeError(f"empty entry in the comma-separated {what} {text!r}")
            try:
                values.append(item(part))
            except argparse.ArgumentTypeError as exc:
                raise argparse.ArgumentTypeError(f"{exc} (in {text!r})") from None
        if unique and len(set(values)) != len(values):
            repeated = sorted({str(v) for v in values if values.count(v) > 1})
            raise argparse.ArgumentTypeError(f"{', '.join(repeated)} given more than once in {text!r}")
        return values

    convert.__name__ = "list"
    return convert


def one_of(choices: Iterable[str], what: str = "value") -> Callable[[str], str]:
    """One of ``choices`` (for the entries of a comma-separated list; a single option uses
    argparse's own ``choices=``)."""
    allowed: Sequence[str] = tuple(choices)

    def convert(text: str) -> str:
        if text not in allowed:
            raise argparse.ArgumentTypeError(f"unknown {what} {text!r} (choose from {', '.join(allowed)})")
        return text

    convert.__name__ = what
    return convert


def int_below(limit: int, what: str = "value") -> Callable[[str], int]:
    """An int in 0 .. limit - 1 (a row number)."""

    def convert(text: str) -> int:
        value = _int(text, f"a {what} from 0 to {limit - 1}")
        if not 0 <= value < limit:
            raise argparse.ArgumentTypeError(f"expected a {what} from 0 to {limit - 1}, got {value}")
        return value

    convert.__name__ = what
    return convert


def int_range(low: int, high: int, what: str = "an integer") -> Callable[[str], int]:
    """An int in low .. high, both included."""

    def convert(text: str) -> int:
        value = _int(text, f"{what} from {low:,} to {high:,}")
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {what} from {low:,} to {high:,}, got {value}")
        return value

    convert.__name__ = "int"
    return convert


def torch_device(text: str) -> str:
    """A torch device this machine has, resolved: ``auto`` (CUDA when present, else the CPU),
    ``cpu``, ``cuda``, ``cuda:N`` (or ``mps``); ``banditrec.models.resolve_device``'s message
    otherwise (an unknown name, or CUDA asked for on a machine without it)."""
    from banditrec.models import resolve_device  # imports torch: only where a script has it already

    try:
        return str(resolve_device(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
