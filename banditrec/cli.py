"""The ``banditrec`` command: run experiments, compare policies offline, plot, list envs and policies."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import inspect
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

# Only the standard library at the top: `banditrec --help`, a usage error or a missing config file
# answer without loading torch, pandas or scipy (seconds); each command imports what it uses.

__all__ = ["console_main", "main"]


def _cmd_run(args: argparse.Namespace) -> int:
    from banditrec.config import ConfigError, load_config

    config = load_config(args.config)
    changes = {}
    if args.seeds is not None:
        changes["seeds"] = args.seeds  # a count: the config makes it seeds 0..N-1 after its checks
    if args.horizon is not None:
        changes["horizon"] = args.horizon
    if args.jobs is not None:
        changes["jobs"] = args.jobs
    # the config's values as this run uses them: the file's, or an option's in its stead
    source = args.config + (" with " + " ".join(f"--{key} {value}" for key, value in changes.items()) if changes else "")
    if changes:
        try:
            config = config.replace(**changes)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    out = _out_dir(args.out, Path("runs") / config.name)
    from banditrec.runner import run_experiment  # torch and pandas: once the config is known good

    try:
        result = run_experiment(config, out, progress=not args.quiet, plot=not args.no_plot,
                                log_feedback=args.log_feedback, backend=args.backend, address=args.address,
                                keep_going=args.keep_going)
    except (ValueError, TypeError, ImportError) as exc:
        # The runner's checks before any trial name the section ("[environment] ..."), as the
        # config file's own errors do after its name; the file is known here only.
        if str(exc).startswith(("[experiment]", "[environment]", "[policies.")):
            exc.args = (f"{source if str(exc).startswith('[experiment]') else args.config}: {exc}",)
            if isinstance(exc, ImportError):  # its message is .msg, not args
                exc.msg = exc.args[0]
        raise
    cols = ["policy", "n_seeds", "final_cumulative_regret", "regret_ci_low", "regret_ci_high", "reward_rate", "decisions_per_s"]
    print(result.summary[cols].to_string(index=False, float_format=lambda v: f"{v:,.3f}"))
    written = "results.csv, summary.csv" if args.no_plot else "regret.png, results.csv, summary.csv"
    print(f"\n{result.trials_run} trial(s) run, {result.trials_reused} reused; results in {out}/ ({written})")
    return 0


def _cmd_ope(args: argparse.Namespace) -> int:
    from banditrec.ope import evaluate_offline, load_feedback, load_offline_targets, plot_comparison
    from banditrec.runner import check_output_dir

    out = check_output_dir(_out_dir(args.out, Path("runs") / "ope" / Path(args.logs).stem))
    feedback = load_feedback(args.logs)
    targets = load_offline_targets(args.config)
    options = dict(targets.options)
    for key in ("train_fraction", "alpha", "seed"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    df = evaluate_offline(feedback, targets.as_dict(), **options)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "ope.csv", index=False)
    plot_comparison(df, out / "ope.png")
    level = round(100 * (1 - df.attrs["alpha"]), 2)
    print(f"{feedback.n_rounds} logged rounds: {df.attrs['n_train']} to train the targets, "
          f"{df.attrs['n_eval']} to evaluate them; {level:g}% {df.attrs['method']} intervals")
    print(df.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"\nresults in {out}/ (ope.csv, ope.png)")
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from banditrec.plots import plot_results
    from banditrec.results import load_results

    run_dir = Path(args.run_dir)
    title = run_dir.resolve().name
    try:  # the experiment's own name, as the run titled its plot, when the folder was renamed
        title = json.loads((run_dir / "manifest.json").read_text())["config"]["name"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    files = plot_results(load_results(run_dir), run_dir / "regret.png", title=title)
    print("\n".join(str(f) for f in files))
    return 0


def _out_dir(given: str | None, default: Path) -> Path:
    """``--out`` as a folder, ``default`` without it; an empty one (an unset $OUT in a script) is
    refused rather than replaced by the default behind the user's back."""
    if given == "":
        raise ValueError(f"--out is empty; give an output folder, or leave --out out for {default}")
    return default if given is None else Path(given)


def _cmd_envs(args: argparse.Namespace) -> int:
    import gymnasium as gym

    from banditrec.environments import registered_ids
    from banditrec.environments.registration import load_object

    for env_id in registered_ids(None):
        spec = gym.spec(env_id)
        simulator = spec.vector_entry_point.args[0]
        factory = load_object(simulator) if isinstance(simulator, str) else simulator
        doc = (inspect.getdoc(factory) or "").split("\n\n")[0].replace("\n", " ")
        try:  # the simulator's parameters, with the registration's defaults over the class's
            params = {
                k: spec.kwargs.get(k, p.default) for k, p in inspect.signature(factory).parameters.items()
                if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            }
        except (TypeError, ValueError):
            params = dict(spec.kwargs)
        shown = ", ".join(k if v is inspect.Parameter.empty else f"{k}={v!r}" for k, v in params.items())
        print(f"{env_id}: {doc}\n    {shown or '(no parameters)'}")
    return 0


def _cmd_policies(args: argparse.Namespace) -> int:
    from banditrec.policies import POLICIES, policy_parameters

    for name, factory in POLICIES.items():
        doc = (inspect.getdoc(factory) or "").split("\n\n")[0].replace("\n", " ")  # the first paragraph, whole
        params = ", ".join(f"{k}={v!r}" for k, v in policy_parameters(name).items())
        print(f"{name}: {doc}\n    {params or '(no parameters)'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="banditrec",
        description="Run bandit experiments, compare policies offline, plot runs, list environments and policies.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--traceback", action="store_true",
                        help="on an error, show Python's full traceback instead of one line (for debugging)")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an experiment from a TOML config", parents=[common])
    run.add_argument("config", help="experiment TOML file")
    run.add_argument("--out", help="output folder (default: runs/<experiment name>)")
    run.add_argument("--seeds", type=_positive_int, help="override the number of seeds (seeds 0..N-1)")
    run.add_argument("--horizon", type=_positive_int,
                     help="override the decisions per trial (rounded up to whole steps of batch_size users)")
    run.add_argument("--jobs", type=_positive_int,
                     help="trials to run in parallel processes (default: the config's [experiment] jobs, else 1)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--no-plot", action="store_true",
                     help="write the tables only (draw later with `banditrec plot OUT`)")
    run.add_argument("--keep-going", action="store_true",
                     help="a failing trial does not stop the others; the failed trials are listed at the end")
    run.add_argument("--backend", choices=["local", "ray"], default="local",
                     help="where trials run: local processes (--jobs) or a Ray cluster")
    run.add_argument("--address", help="Ray cluster address ('auto': the cluster `ray start` began here; "
                     "'ray://host:10001'); default: a local Ray instance with `jobs` CPUs, or the cluster "
                     "$RAY_ADDRESS names when it is set")
    run.add_argument("--log-feedback", action="store_true",
                     help="also save every decision as logged feedback (OUT/feedback/*.npz) for off-policy evaluation")
    run.set_defaults(func=_cmd_run)
    ope = sub.add_parser("ope", help="compare policies offline on logged feedback", parents=[common])
    ope.add_argument("logs", help="LoggedFeedback .npz file (e.g. OUT/feedback/*.npz of `run --log-feedback`)")
    ope.add_argument("--config", required=True,
                     help="TOML file with [policies.NAME] tables (type = ..., parameters), as in experiment configs")
    ope.add_argument("--train-fraction", type=_fraction(0.0, True), dest="train_fraction",
                     help="share of the earliest rounds that train the targets before they are frozen (default 0.5)")
    ope.add_argument("--out", help="output folder for ope.csv and ope.png (default: runs/ope/<log name>)")
    ope.add_argument("--alpha", type=_fraction(0.0, False), help="intervals are (1 - alpha) two-sided (default 0.05)")
    ope.add_argument("--seed", type=_seed, help="seed of the target policies, bootstrap and reward-model folds (default 0)")
    ope.set_defaults(func=_cmd_ope)
    plot = sub.add_parser("plot", help="redraw the plots of a finished run", parents=[common])
    plot.add_argument("run_dir", help="a run folder (with results.csv); writes RUN_DIR/regret.png and regret.pdf")
    plot.set_defaults(func=_cmd_plot)
    envs = sub.add_parser("envs", help="list registered environments and their parameters", parents=[common])
    envs.set_defaults(func=_cmd_envs)
    policies = sub.add_parser("policies", help="list policy types and their parameters", parents=[common])
    policies.set_defaults(func=_cmd_policies)
    return parser


def _int_at_least(minimum: int, wanted: str) -> Any:
    """argparse type for an int >= ``minimum``, refused as ``expected {wanted}``."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {value}")
        return value

    convert.__name__ = "integer"
    return convert


#: argparse type for counts: the same rule as the config file's (an int >= 1)
_positive_int = _int_at_least(1, "a positive integer")
#: argparse type for a seed: an int >= 0, as numpy's generators take
_seed = _int_at_least(0, "an integer >= 0")


def _fraction(low: float, low_closed: bool) -> Any:
    """argparse type for a share: a finite number in [low, 1) (``low_closed``) or (low, 1), so that
    ``--alpha nan`` is argparse's one line naming the option, not the estimators' message without it."""
    wanted = f"a number in {'[' if low_closed else '('}{low:g}, 1)"

    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        if not (value >= low if low_closed else value > low) or not value < 1.0:  # NaN fails both
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text}")
        return value

    convert.__name__ = "number"
    return convert


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _exit_at_once(signum: int, frame: Any) -> None:
    """A second Ctrl-C (or SIGTERM) after the first was handled: end the process now, quietly.
    Finished trials are on disk by then, each written to a temporary file and renamed."""
    for stream in (sys.stdout, sys.stderr):
        # a flush the signal interrupted (reentrant: RuntimeError), a closed pipe or file: exit anyway
        with contextlib.suppress(RuntimeError, OSError, ValueError):
            stream.flush()
    if not _told:  # the second came before the first's line was printed (a loaded machine): print it
        with contextlib.suppress(OSError):
            os.write(2, _INTERRUPTED.encode())
    os._exit(130)


_interrupted = False
_told = False
_INTERRUPTED = "\ninterrupted: finished trials are saved; rerun the same command to resume\n"


def _ignore_signals_if_interrupted() -> None:
    """The last exit callback of an interrupted command: from here to the end Ctrl-C is ignored.
    Late in shutdown the interpreter puts back the default handlers it installed, so a second
    Ctrl-C then killed the process by SIGINT (exit status -2, not 130); an ignored signal it
    leaves as it is. The steps left are short and wait on nothing."""
    if _interrupted:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def console_main() -> int:
    """The ``banditrec`` command: :func:`main`, where after an interrupt a second one ends the
    process at once and quietly, instead of a KeyboardInterrupt traceback from an exit callback
    (the worker pool's, torch's) or a kill by SIGINT."""
    atexit.register(_ignore_signals_if_interrupted)  # registered first (only the standard library is loaded), so run last
    return main(_second_interrupt_exits=True)


def main(argv: list[str] | None = None, *, _second_interrupt_exits: bool = False) -> int:
    global _interrupted, _told
    args = build_parser().parse_args(argv)
    # A scheduler's or supervisor's SIGTERM stops a run as Ctrl-C does: worker processes are
    # stopped and finished trials stay saved (the default SIGTERM ends the process at once and
    # leaves its workers behind).
    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if on_main else None
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if on_main and _second_interrupt_exits:  # first, before anything else can be interrupted
            _interrupted = True
            signal.signal(signal.SIGINT, _exit_at_once)
            signal.signal(signal.SIGTERM, _exit_at_once)
            previous = _exit_at_once  # what `finally` leaves SIGTERM at
        print(_INTERRUPTED, file=sys.stderr, end="", flush=True)
        _told = True
        return 130
    except Exception as exc:
        if args.traceback:
            raise
        if _reported_in_one_line(exc):
            print(f"banditrec: error: {_message(exc)}{_notes(exc)}", file=sys.stderr)
            return 2
        # Any other error inside a trial, or in an offline target policy, is the user's code's (a
        # plug-in policy's RuntimeError, a simulator's KeyError, a MemoryError): one line naming
        # it, with its type, which its message alone may not say ("KeyError: 'x'"). Elsewhere it
        # is banditrec's own bug: the traceback.
        notes = getattr(exc, "__notes__", ())
        if not any(note.startswith(("in trial ", "in target policy ")) for note in notes):
            raise
        message = _message(exc)
        print(f"banditrec: error: {type(exc).__name__}{': ' if message else ''}{message}{_notes(exc)}", file=sys.stderr)
        return 2
    finally:
        if on_main:
            signal.signal(signal.SIGTERM, previous)


#: banditrec's own errors that are the user's to fix (data that cannot be fetched, failed trials),
#: as (module, class name), not imported here: banditrec.data loads pandas and scipy
_OWN_ERRORS = (
    ("banditrec.data.cache", "DataUnavailableError"), ("banditrec.sweep", "TrialsFailed"), ("banditrec.sweep", "WorkerDied"),
)


def _reported_in_one_line(exc: Exception) -> bool:
    """Whether ``exc`` is the user's to fix and said in one line: a bad value, a file, a missing
    import, or one of :data:`_OWN_ERRORS` (looked up in ``sys.modules``: one can be raised only
    once its module is loaded)."""
    if isinstance(exc, (ValueError, TypeError, OSError, ImportError, FloatingPointError)):
        return True
    return any(
        isinstance(exc, getattr(sys.modules[module], name)) for module, name in _OWN_ERRORS if module in sys.modules
    )


def _notes(exc: BaseException) -> str:
    return "".join(f" ({note})" for note in getattr(exc, "__notes__", ()))  # e.g. which trial failed


def _message(exc: BaseException) -> str:
    """The error in one line; an operating system's (a folder it may not write, a full disk) as
    'path: reason' rather than '[Errno 13] Permission denied: ...'."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        return f"cannot use {exc.filename}: {exc.strerror}"
    return str(exc)


if __name__ == "__main__":
    sys.exit(console_main())
