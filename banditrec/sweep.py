"""Where trials run: in this process, in local worker processes, or on a Ray cluster.

Each backend takes the list of trials still to do and yields each result as soon as it
finishes, so the runner can save it at once: a crash or Ctrl-C loses only trials in flight.
Trials are independent and fully seeded, so every backend returns the same numbers.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import signal
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

__all__ = ["BACKENDS", "TrialFailure", "TrialsFailed", "WorkerDied", "check_backend", "execute_trials"]

BACKENDS = ("local", "ray")
Trial = tuple[Any, int, str]  # (PolicySpec, seed, fingerprint)


class TrialsFailed(RuntimeError):
    """Trials of a ``keep_going`` run raised; the message lists them (the others are saved)."""


class WorkerDied(RuntimeError):
    """A worker process ended without an answer (killed from outside: the out-of-memory killer,
    a scheduler); the message names the trials that were unfinished."""


def _trial_names(trials: Sequence[Trial]) -> str:
    shown = ", ".join(f"{spec.name!r} seed {seed}" for spec, seed, _ in trials[:6])
    return shown + (f" and {len(trials) - 6} more" if len(trials) > 6 else "")


@dataclass(frozen=True)
class TrialFailure:
    """What a trial that raised yields in place of its result when the sweep keeps going: its
    error as one line, with the notes that name the trial (a string crosses process and Ray
    boundaries where an arbitrary exception might not pickle)."""

    message: str

    @classmethod
    def of(cls, exc: Exception) -> TrialFailure:
        notes = "".join(f" ({note})" for note in getattr(exc, "__notes__", ()))
        return cls(f"{type(exc).__name__}: {exc}{notes}")


def _job(config: Any, spec: Any, seed: int, log_feedback: bool, keep_going: bool = False,
         tick: Callable[[int], None] | None = None) -> Any:
    from banditrec.runner import run_trial

    try:
        return run_trial(config, spec, seed, tick, log_feedback=log_feedback)
    except Exception as exc:
        if not keep_going:
            raise
        return TrialFailure.of(exc)


def execute_trials(
    config: Any,
    todo: Sequence[Trial],
    backend: str = "local",
    address: str | None = None,
    log_feedback: bool = False,
    tick: Callable[[int], None] | None = None,
    keep_going: bool = False,
) -> Iterator[tuple[Trial, Any]]:
    """Run ``todo`` and yield ``(trial, TrialResult)`` pairs in order of completion.

    A trial that raises stops the run with its error; with ``keep_going`` it yields a
    :class:`TrialFailure` instead and the other trials go on.

    Parameters
    ----------
    backend : {"local", "ray"}
        ``local`` runs in this process (``config.jobs == 1``) or in ``config.jobs`` worker
        processes; ``ray`` submits one task per trial to a Ray cluster.
    address : str or None
        Ray cluster address (``"auto"`` or ``"ray://host:10001"``); None (or ``"local"``) starts
        a local Ray instance with ``config.jobs`` CPUs for the duration of the run, even when a
        cluster started by ``ray start`` runs on this machine (``"auto"`` joins that one). With
        None and the ``RAY_ADDRESS`` environment variable set, as inside a Ray job, the run
        joins the cluster it names instead, on that cluster's CPUs, with a warning that says so.
    tick : callable or None
        Progress callback, called with the number of steps done.
    """
    check_backend(backend, address)
    if not todo:
        return
    if backend == "ray":
        yield from _ray(config, todo, address, log_feedback, tick, keep_going)
    elif config.jobs > 1 and len(todo) > 1:
        yield from _processes(config, todo, log_feedback, tick, keep_going)
    else:
        for trial in todo:
            spec, seed, _ = trial
            yield trial, _job(config, spec, seed, log_feedback, keep_going, tick)


def check_backend(backend: str, address: str | None = None) -> None:
    """The checks of :func:`execute_trials`'s arguments, for a caller to make before it changes
    anything: a generator's own run only when it is first iterated."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    if address is not None and backend != "ray":
        raise ValueError("address is only meaningful with backend='ray'")
    if backend == "ray" and importlib.util.find_spec("ray") is None:
        raise ImportError(_NO_RAY)


_NO_RAY = "the ray backend needs Ray: pip install 'banditrec[ray]'"


def _for_one(config: Any, spec: Any, seed: int) -> Any:
    """``config`` with its policy list and seeds cut to the trial's own: a worker needs no other;
    the whole policy list, pickled once per trial, made a sweep of 2,000 policies send about
    220 MB, and re-validating every seed per trial cost 2.3 ms each with 10,000 seeds."""
    return config.replace(policies=(spec,), seeds=(seed,))


def _die_with_parent() -> None:
    """Worker initializer: on Linux, ask the kernel to end this worker when the process that
    started it dies, even by SIGKILL (an out-of-memory kill, a scheduler's kill -9), rather than
    leave it idle forever waiting for work."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the CLI's handler, inherited on fork: just end
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # no prctl: nothing to set
            pass


def _processes(config, todo, log_feedback, tick, keep_going) -> Iterator[tuple[Trial, Any]]:
    """The trials on a pool of ``config.jobs`` worker processes. When a worker is killed (the
    out-of-memory killer) the pool breaks and every unfinished trial with it: without
    ``keep_going`` that is :class:`WorkerDied`; with it, the trials the pool had started run
    again each in a process of its own (a trial that dies again fails alone), and the others on
    a fresh pool."""
    remaining = list(todo)
    while remaining:
        unfinished = yield from _pool_round(config, remaining, log_feedback, tick, keep_going)
        if not unfinished:
            return
        if not keep_going:
            raise WorkerDied(
                f"a worker process died (killed from outside: out of memory?) with {len(unfinished)} trial(s) "
                f"unfinished ({_trial_names(unfinished)}); finished trials are saved: rerun to resume, or run "
                "with --keep-going to go on without the trial that dies"
            )
        # A pool hands its trials to the workers in submission order, at most one more than it has
        # workers ahead: the trials it had started are the first unfinished ones.
        started = min(config.jobs, len(remaining)) + 1
        yield from _isolated(config, unfinished[:started], log_feedback, tick)
        remaining = unfinished[started:]


def _pool_round(config, todo, log_feedback, tick, keep_going):
    """Run ``todo`` on one pool, yielding results; return the unfinished trials, in ``todo``'s
    order, when a worker died (an empty list when every trial finished)."""
    pool = ProcessPoolExecutor(max_workers=min(config.jobs, len(todo)), initializer=_die_with_parent)
    completed = False
    unfinished: list[int] = []
    try:
        pending = {pool.submit(_job, _for_one(config, spec, seed), spec, seed, log_feedback, keep_going): i
                   for i, (spec, seed, _) in enumerate(todo)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                index = pending.pop(fut)
                try:
                    result = fut.result()
                except BrokenProcessPool:
                    # a worker was killed: every unfinished trial's future fails with it, and
                    # which one it was running cannot be told
                    unfinished = sorted([index, *pending.values()])
                    break
                if tick is not None:
                    tick(config.n_steps)
                yield todo[index], result
            if unfinished:
                break
        completed = not unfinished
    finally:
        if not completed:
            # Interrupted, a trial failed or a worker died: stop the trials in flight now. Waiting
            # for them (minutes for a neural trial) would only throw their results away.
            _stop(pool)
        pool.shutdown(wait=completed, cancel_futures=True)
    return [todo[i] for i in unfinished]


def _isolated(config, todo, log_feedback, tick) -> Iterator[tuple[Trial, Any]]:
    """Trials a dead worker may have been running, each in a process of its own
    (``config.jobs`` at a time): a trial whose process dies again is a failure of its own."""
    waiting, running = list(todo), {}
    try:
        while waiting or running:
            while waiting and len(running) < config.jobs:
                spec, seed, fp = waiting.pop(0)
                solo = ProcessPoolExecutor(max_workers=1, initializer=_die_with_parent)
                fut = solo.submit(_job, _for_one(config, spec, seed), spec, seed, log_feedback, True)
                running[fut] = ((spec, seed, fp), solo)
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                trial, solo = running.pop(fut)
                try:
                    result = fut.result()
                except BrokenProcessPool:
                    result = TrialFailure(
                        f"WorkerDied: its worker process died (killed from outside: out of memory?) "
                        f"(in trial {trial[0].name!r}, seed {trial[1]})"
                    )
                solo.shutdown(wait=False)
                if tick is not None:
                    tick(config.n_steps)
                yield trial, result
    finally:
        for _, solo in running.values():
            _stop(solo)
            solo.shutdown(wait=False, cancel_futures=True)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Terminate a pool's worker processes (the trials they run are thrown away)."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()


def _ray(config, todo, address, log_feedback, tick, keep_going) -> Iterator[tuple[Trial, Any]]:
    try:
        import ray
    except ImportError as exc:
        raise ImportError(_NO_RAY) from exc
    started = not ray.is_initialized()
    session_dir = None
    if started:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        joined = os.environ.get("RAY_ADDRESS") if address is None else None
        if joined:
            # ray.init(address=None) joins this cluster, where it refuses num_cpus ("When
            # connecting to an existing cluster, num_cpus and num_gpus must not be provided").
            warnings.warn(
                f"RAY_ADDRESS is set: the trials run on the Ray cluster at {joined!r}, on its CPUs "
                f"(jobs = {config.jobs} applies only to a local Ray instance: unset RAY_ADDRESS or "
                "pass address 'local' for one)",
                stacklevel=2,
            )
        elif address in (None, "local"):
            # "local", not None: Ray would otherwise join a cluster left by `ray start` on this
            # machine (and refuse num_cpus there) rather than start the instance documented above.
            address, kwargs["num_cpus"] = "local", config.jobs
        ray.init(address=address, **kwargs)
        session_dir = _own_session_dir(ray)
    keep_logs = False
    try:
        remote = ray.remote(num_cpus=1)(_job)
        pending = {remote.remote(_for_one(config, spec, seed), spec, seed, log_feedback, keep_going): (spec, seed, fp)
                   for spec, seed, fp in todo}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    trial = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:
                        # The trial's own error, as the local backend raises it (a RayTaskError
                        # prints the remote worker's whole traceback as its message).
                        cause = getattr(exc, "cause", None)
                        if isinstance(cause, Exception):
                            raise cause from None
                        raise
                    if tick is not None:
                        tick(config.n_steps)
                    yield trial, result
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
    except ray.exceptions.RayError:  # Ray's own failure (a worker crashed): its message points to the logs
        keep_logs = True
        raise
    finally:
        if started:
            ray.shutdown()
            if session_dir is not None and not keep_logs:
                _remove_session_dir(session_dir)


def _own_session_dir(ray: Any) -> str | None:
    """The session folder (``/tmp/ray/session_*``: logs, sockets) of the Ray node this process
    has just started as its head, or None when it joined a running cluster, whose folder is not
    ours to remove (or when Ray's internals are not as expected)."""
    node = getattr(getattr(getattr(ray, "_private", None), "worker", None), "_global_node", None)
    try:
        return node.get_session_dir_path() if node is not None and node.is_head() else None
    except Exception:  # noqa: BLE001 - a tidy-up aid, never the cause of a failure
        return None


def _remove_session_dir(session_dir: str) -> None:
    """Remove a finished local Ray's session folder, which ``ray.shutdown`` leaves behind (about
    200 KB per run, never cleaned up), and Ray's ``session_latest`` link when it points there.
    A run stopped by Ray's own error (a worker crashed) keeps it: the error points to the logs
    inside."""
    latest = os.path.join(os.path.dirname(session_dir), "session_latest")
    try:
        if os.path.islink(latest) and os.path.realpath(latest) == os.path.realpath(session_dir):
            os.unlink(latest)
    except OSError:
        pass
    shutil.rmtree(session_dir, ignore_errors=True)
