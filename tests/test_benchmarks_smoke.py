"""Cheap checks of what the benchmark scripts rely on: a user population in the linear world,
candidate sampling from large catalogues, each benchmark's own measurement on a tiny world, and
each script's command line (its --help, and its refusal of values that make no sense)."""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from banditrec.environments import LinearWorld, make_vector_env
from banditrec.environments.candidates import _sample_sparse

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    """Import benchmarks/NAME.py as a module (the scripts pin BLAS threads for themselves; keep the
    test session's environment). NAME may be in a folder: ``peers/run``."""
    spec = importlib.util.spec_from_file_location(f"bench_{name.replace('/', '_')}",
                                                  ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there (peers/run.py has some)
    saved = dict(os.environ)
    try:
        spec.loader.exec_module(module)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return module


def _scale_module():
    return _load("scale")


def test_linear_world_user_population_shapes_ids_and_memory():
    n_users, n_items, K, d, B = 1000, 5000, 50, 4, 64
    env = make_vector_env("banditrec/Linear-v0", num_envs=B, n_users=n_users, n_items=n_items,
                          n_candidates=K, context_dim=d)
    env.reset(seed=0)
    sim = env.simulator
    assert sim.n_users == n_users and sim.user_contexts.shape == (n_users, d)
    assert sim.user_contexts.dtype == np.float32
    # World arrays: the population and the items, nothing of size users × items.
    assert sum(v.nbytes for v in vars(sim).values() if isinstance(v, np.ndarray)) == 4 * n_users * d + 2 * 8 * n_items * d
    seen = {}
    for _ in range(20):
        obs = env.observation
        assert obs.user_features.shape == (B, d) and obs.user_features.dtype == np.float64
        assert obs.item_features.shape == (B, K, d) and obs.item_ids.shape == (B, K)
        assert obs.user_ids.min() >= 0 and obs.user_ids.max() < n_users
        s = np.sort(obs.item_ids, axis=1)
        assert (s[:, 1:] != s[:, :-1]).all()
        for uid, x in zip(obs.user_ids, obs.user_features):
            np.testing.assert_array_equal(seen.setdefault(int(uid), x), x)  # a user keeps its context
        env.step_batch(np.zeros(B, dtype=np.int64))
    # The items do not depend on the population; the default world stays anonymous.
    plain = LinearWorld(n_items=n_items, n_candidates=K, context_dim=d)
    np.testing.assert_array_equal(plain.item_vectors, sim.item_vectors)
    assert plain.n_users is None and plain.user_contexts is None
    with pytest.raises(ValueError, match="n_users"):
        LinearWorld(n_users=0)


@pytest.mark.parametrize(("B", "n_items", "K"), [(64, 100_000, 100), (512, 1682, 100), (256, 300, 200), (64, 20, 5)])
def test_sparse_candidates_distinct_in_range_every_regime(B, n_items, K):
    ids = _sample_sparse(np.random.default_rng(0), B, n_items, K)
    assert ids.shape == (B, K) and ids.dtype == np.int64
    assert ids.min() >= 0 and ids.max() < n_items
    s = np.sort(ids, axis=1)
    assert (s[:, 1:] != s[:, :-1]).all()


def test_scale_benchmark_measures_a_small_disjoint_linucb():
    scale = _scale_module()
    cfg = {"part": 2, "label": "disjoint LinUCB", "type": "LinUCB", "params": {"form": "disjoint"},
           "world": {"n_users": 2000, "n_items": 50, "n_candidates": 10, "context_dim": 4},
           "batch": 8, "decisions": 64}
    out = scale.measure(cfg, traced_steps=1)
    assert out["decisions"] == 64 and out["decisions_per_s"] > 0
    n_arms, d, d2 = out["policy_shapes"]["A_inv_"]
    assert n_arms >= 50 and d == d2 == 5  # stacked per-arm statistics over (user, 1)
    assert out["world_mb"] == pytest.approx((4 * 2000 * 4 + 2 * 8 * 50 * 4) / 2**20)
    assert out["peak_rss_delta_mb"] >= 0 and np.isfinite(out["step_working_set_mb"])
    assert 0 <= out["regret_per_decision"] <= 1


@pytest.mark.parametrize("engine", ["numba", "numpy", "torch"])
def test_space_bandits_benchmark_runs_banditrec_on_a_short_wheel(engine):
    """The banditrec side of space_bandits_wheel.py (space-bandits itself is an optional extra)."""
    bench = _load("space_bandits_wheel")
    obs, expected, rewards = bench.wheel_data(0.5, 300)
    training = {"optimizer": "rmsprop_tf", "lr": 0.1, "step_decay": 0.5, "max_grad_norm": 5.0, "engine": engine}
    actions, rate = bench.run_banditrec(obs, rewards, training, batch=5, n_mc=3)
    assert actions.shape == (300,) and set(np.unique(actions)) <= set(range(5)) and rate > 0
    assert bench.pseudo_regret(expected, actions) >= 0


@pytest.mark.parametrize("engine", ["torch", "numpy", "numba"])
def test_training_engines_benchmark_times_a_round(engine):
    bench = _load("training_engines")
    assert bench.time_engine(engine, (2, (8,), 3, 16), steps=2, repeats=2) > 0


@pytest.mark.parametrize(("engines", "compared"), [
    ("torch,numpy,numba", ["numpy vs torch", "numba vs torch"]),
    ("numba,torch", ["numba vs torch"]),
    ("numpy,numba", []),  # printed "numpy vs torch" and "numba vs torch" columns of empty cells
    ("torch", []),  # printed an empty trailing column
])
def test_training_engines_table_has_a_speed_column_only_where_torch_was_timed(engines, compared, monkeypatch,
                                                                              capsys):
    bench = _load("training_engines")
    us = {"torch": 300.0, "numpy": 150.0, "numba": 100.0}
    monkeypatch.setattr(bench, "time_engine", lambda engine, *args: us[engine])
    monkeypatch.setattr(bench.compiled_training, "warm_up", lambda: None)
    monkeypatch.setattr(bench, "threadpool_limits", lambda limit: None)  # keep the test session's threads
    monkeypatch.setattr(bench.torch, "set_num_threads", lambda n: None)
    monkeypatch.setattr("sys.argv", ["training_engines.py", "--engines", engines])
    bench.main()
    rows = [[cell.strip() for cell in line.split("|")[1:-1]]
            for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    header, alignment, body = rows[0], rows[1], rows[2:]
    timed = engines.split(",")
    assert header == ["network (in → hidden → out)", "minibatch", *timed, *compared]
    assert len(body) == len(bench.SIZES) and all(len(row) == len(header) for row in [alignment, *body])
    assert all(cell for row in body for cell in row)
    speeds = [f"{us['torch'] / us[name.split()[0]]:.1f}×" for name in compared]
    assert all(row[2 + len(timed):] == speeds for row in body)


def test_peers_benchmark_runs_the_rows_it_is_asked_for(tmp_path, monkeypatch, capsys):
    """peers/run.py's banditrec rows on a short workload (the peers are optional extras), with
    ``--only`` keeping two of the three rows and ``--json`` writing them."""
    import json

    bench = _load("peers/run")
    out = tmp_path / "peers.json"
    monkeypatch.setattr("sys.argv", ["run.py", "--horizon", "200", "--repeats", "1", "--only", "banditrec linucb",
                                     "--no-replay", "--json", str(out)])
    bench.main()
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| banditrec")]
    assert [line.split("|")[2].strip() for line in table] == ["LinUCB", "LinUCB"]
    rows = json.loads(out.read_text())["rows"]
    assert [(r["library"], r["status"], len(r["rates"])) for r in rows] == [("banditrec", "ok", 1)] * 2
    assert all(0 < r["regret"] < 200 for r in rows)


@pytest.mark.parametrize("world", ["device", "numpy"])
def test_gpu_benchmark_measures_its_rows_on_the_cpu(world):
    """benchmarks/gpu.py's measurement, tiny: the device world (here on the CPU) and the numpy one."""
    gpu = _load("gpu")
    opts = {"policy": "NeuralLinear", "device": "cpu", "world": world, "decide_on": "device", "cuda_graph": "auto",
            "batch": 32, "candidates": 10, "steps": 1, "repeats": 2, "hidden": [8], "train_every": 32,
            "train_steps": 2, "num_threads": 1, "ids": False}
    r = gpu.measure(opts)
    assert r["world"] == world and r["decide_on"] == "device" and not r["graphs"]
    assert len(r["rates"]) == 2 and r["median"] > 0 and 0 <= r["regret_per_decision"] < 1


def test_decision_profile_counts_operators_on_the_cpu(monkeypatch, capsys):
    """decision_profile.py reads the device path's operator counts without a GPU (the lines the
    GPU sessions compare)."""
    module = _load("decision_profile")
    monkeypatch.setattr("sys.argv", ["decision_profile.py", "--device", "cpu", "--decisions", "8",
                                     "--policies", "NeuralEpsilonGreedy"])
    module.main()
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith("== NeuralEpsilonGreedy"))
    counts = [int(word.rstrip(",")) for word in line.split("act")[1].split() if word.rstrip(",").isdigit()]
    assert len(counts) == 3 and 0 < counts[0] < 1000 and 0 < counts[1] < counts[2]


# --------------------------------------------------------------------------- command lines
# Every script in benchmarks/ and its folders (the helpers, whose names start with "_", are not
# scripts). Each one's --help says what it measures, what it prints and how long it takes at the
# defaults, and describes every option; a value that makes no sense is refused by argparse before
# anything runs: one "error: argument --NAME: ..." line, exit status 2.
SCRIPTS = ("decision_profile", "gpu", "linucb_speed", "neural_speed", "peers/run", "scale", "space_bandits_wheel",
           "training_engines")

# One representative bad value per script, run as a real command (a subprocess).
BAD_COMMAND = {
    "decision_profile": ["--policies", "NeuralLinear,LinUCB"],
    "gpu": ["--repeats", "0"],
    "linucb_speed": ["--repeats", "0"],
    "neural_speed": ["--batches", "1,0"],
    "peers/run": ["--only", "nosuchlibrary"],  # checked against the rows after parsing
    "scale": ["--only", "10"],
    "space_bandits_wheel": ["--deltas", "0.5,1.5"],
    "training_engines": ["--engines", "torch,tensorflow"],
}

# More bad values, checked on each script's parser in this process (cheap: no interpreter start).
BAD_VALUES = [
    ("linucb_speed", ["--horizon", "0"]), ("linucb_speed", ["--horizon", "1e3"]),
    ("linucb_speed", ["--repeats", "-1"]),
    ("training_engines", ["--steps", "0"]), ("training_engines", ["--repeats", "0"]),
    ("training_engines", ["--engines", ""]), ("training_engines", ["--engines", "numpy,numpy"]),
    ("training_engines", ["--engines", "numba,"]),
    ("neural_speed", ["--device", "tpu"]), ("neural_speed", ["--decisions", "0"]),
    ("neural_speed", ["--repeats", "0"]), ("neural_speed", ["--batches", ""]),
    ("neural_speed", ["--batches", "64,x"]), ("neural_speed", ["--train-every", "0"]),
    ("neural_speed", ["--train-steps", "-2"]),
    ("decision_profile", ["--device", "gpu"]), ("decision_profile", ["--batch", "0"]),
    ("decision_profile", ["--decisions", "-1"]), ("decision_profile", ["--policies", ""]),
    ("gpu", ["--device", "cuda:x"]), ("gpu", ["--steps", "0"]), ("gpu", ["--batch", "0"]),
    ("gpu", ["--candidates", "0"]), ("gpu", ["--candidates", "1683"]), ("gpu", ["--hidden", "64,0"]),
    ("gpu", ["--hidden", ""]), ("gpu", ["--train-every", "0"]), ("gpu", ["--train-steps", "0"]),
    ("gpu", ["--num-threads", "-1"]), ("gpu", ["--policies", "Random"]),
    ("gpu", ["--compare", "eager,bogus"]), ("gpu", ["--compare", "default"]),
    ("scale", ["--steps", "0"]), ("scale", ["--decisions-b1", "0"]), ("scale", ["--decisions-b64", "-64"]),
    ("scale", ["--only", "-1"]), ("scale", ["--only", "1,x"]),
    ("space_bandits_wheel", ["--contexts", "0"]), ("space_bandits_wheel", ["--deltas", "0"]),
    ("space_bandits_wheel", ["--deltas", "0.5,nan"]), ("space_bandits_wheel", ["--optimizer", "adamw"]),
    ("space_bandits_wheel", ["--lr", "0"]), ("space_bandits_wheel", ["--lr", "inf"]),
    ("space_bandits_wheel", ["--step-decay", "-0.5"]), ("space_bandits_wheel", ["--max-grad-norm", "0"]),
    ("space_bandits_wheel", ["--engines", "jax"]), ("space_bandits_wheel", ["--batch", "0"]),
    ("space_bandits_wheel", ["--n-mc", "0"]), ("space_bandits_wheel", ["--repeats", "0"]),
    # peers/run.py took any int (a horizon of 0 divided by zero after the setup) and an empty --only
    # name, which matched every row
    ("peers/run", ["--horizon", "0"]), ("peers/run", ["--horizon", "2e4"]), ("peers/run", ["--repeats", "0"]),
    ("peers/run", ["--repeats", "-3"]), ("peers/run", ["--only", ""]), ("peers/run", ["--only"]),
    ("peers/run", ["--json", "/nonexistent-folder/out.json"]), ("peers/run", ["--json", "/tmp"]),
]


def _parser(name: str):
    return _load(name).build_parser()


def _options(parser):
    """The parser's documented options: every action but --help and the hidden ones (--child)."""
    return [action for action in parser._actions
            if action.help is not argparse.SUPPRESS and "--help" not in action.option_strings]


def _prog(name: str) -> str:
    """The script's name as argparse prints it: ``run.py`` for ``peers/run``."""
    return f"{Path(name).name}.py"


def _run(name: str, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False, env=env)


@pytest.fixture(scope="module")
def commands():
    """Each script's ``--help`` and its bad command, run as real commands two at a time (starting a
    script takes 2–5 s, nearly all of it imports: banditrec imports torch, scipy and pandas). All
    finish before any test goes on, each with its own copy of the environment: spawned from the
    pool's threads while other tests ran (and set environment variables), one start failed in CI
    with "OSError: [Errno 14] Bad address"."""
    env = dict(os.environ)
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        runs = {}
        for name in SCRIPTS:
            runs[name, "help"] = pool.submit(_run, name, "--help", env=env)
            runs[name, "bad"] = pool.submit(_run, name, *BAD_COMMAND[name], env=env)
        done = {key: future.result() for key, future in runs.items()}
    yield {key: (lambda proc=proc: proc) for key, proc in done.items()}


def test_every_benchmark_script_is_covered():
    folder = ROOT / "benchmarks"
    scripts = {p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob("*.py")
               if not p.name.startswith("_")}
    assert scripts == set(SCRIPTS) == set(BAD_COMMAND)


@pytest.mark.parametrize("name", SCRIPTS)
def test_benchmark_help_says_what_it_measures_and_describes_every_option(name, commands):
    proc = commands[name, "help"]()
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert text.startswith(f"usage: {_prog(name)}")
    words = " ".join(text.split())
    assert "Prints" in words and "Run time at the defaults" in words  # the description's output and duration
    options = _options(_parser(name))
    assert options
    for action in options:
        flag = action.option_strings[-1]
        assert flag in text.split("options:")[1], flag
        assert action.help and len(action.help) > 10, f"{name} {flag}: no description"
        takes_value = action.nargs != 0
        if takes_value and action.default is not None:
            assert "default" in action.help, f"{name} {flag}: default not shown"
    assert "%(default)s" not in text  # every placeholder was filled in


@pytest.mark.parametrize("name", SCRIPTS)
def test_benchmark_refuses_a_bad_value_in_one_line(name, commands):
    argv = BAD_COMMAND[name]
    proc = commands[name, "bad"]()
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{_prog(name)}: error: argument {argv[0]}: "), last
    bad = argv[1].split(",")[-1]
    assert repr(bad) in last or f" {bad}" in last, last  # the value itself is named


@pytest.mark.parametrize(("name", "argv"), BAD_VALUES, ids=[f"{n}{' '.join(a)}" for n, a in BAD_VALUES])
def test_benchmark_option_refuses_a_value_that_makes_no_sense(name, argv, capsys):
    parser = _parser(name)
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert f"error: argument {argv[0]}: " in err[-1] and sum("error:" in line for line in err) == 1


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_numeric_option_refuses_a_negative_value(name, capsys):
    """A count, size, rate or norm below zero is never meaningful: an option added without a
    checked type fails here."""
    parser = _parser(name)
    numeric = [a for a in _options(parser)
               if isinstance(a.default, (int, float)) and not isinstance(a.default, bool)]
    for action in numeric:
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([action.option_strings[-1], "-1"])
        assert exc.value.code == 2, action.option_strings
        assert f"argument {action.option_strings[-1]}: " in capsys.readouterr().err


def test_benchmark_defaults_are_unchanged():
    """The checked types leave each benchmark's defaults (the README's numbers) as they were."""
    def defaults(name):
        return vars(_parser(name).parse_args([]))

    assert defaults("linucb_speed") == {"horizon": 20_000, "repeats": 3}
    assert defaults("training_engines") == {"steps": 100, "repeats": 7,
                                            "engines": ["torch", "numpy", "numba"]}
    speed = defaults("neural_speed")
    assert speed.pop("device") in ("cpu", "cuda")  # "auto", resolved
    assert speed == {"decisions": 4096, "repeats": 3, "batches": [1, 64, 1024], "train_every": 32,
                     "train_steps": 32}
    profile = defaults("decision_profile")
    assert profile.pop("device") in ("cpu", "cuda")
    assert profile == {"batch": 1, "decisions": 512,
                       "policies": ["NeuralEpsilonGreedy", "NeuralLinear", "NeuralUCB"]}
    gpu = defaults("gpu")
    assert gpu.pop("device") in ("cpu", "cuda")
    assert gpu == {"steps": 1, "repeats": 3, "batch": 4096, "candidates": 100, "hidden": [64],
                   "train_every": 32, "train_steps": 32, "num_threads": 1, "ids": False,
                   "policies": ["NeuralLinear", "NeuralEpsilonGreedy"], "compare": ["eager", "numpy-world"],
                   "child": None}
    assert defaults("peers/run") == {"horizon": 20_000, "repeats": 3, "only": None, "no_replay": False,
                                     "profile": False, "json": None}
    assert defaults("scale") == {"steps": 16, "decisions_b1": 2000, "decisions_b64": 16384, "only": [],
                                 "child": None}
    assert defaults("space_bandits_wheel") == {
        "contexts": 20_000, "deltas": [0.5, 0.95], "optimizer": "rmsprop_tf", "lr": 0.1, "step_decay": 0.5,
        "max_grad_norm": 5.0, "engines": ["numba", "numpy", "torch"], "batch": 10, "n_mc": 100, "repeats": 3,
        "skip_space_bandits": False}


def test_benchmark_options_accept_their_edge_values():
    gpu = _parser("gpu").parse_args(["--compare", "", "--hidden", "64,64", "--num-threads", "0",
                                     "--candidates", "1682", "--device", "cpu",
                                     "--policies", "NeuralTS,NeuralUCB"])
    assert gpu.compare == [] and gpu.hidden == [64, 64] and gpu.num_threads == 0 and gpu.candidates == 1682
    assert gpu.device == "cpu" and gpu.policies == ["NeuralTS", "NeuralUCB"]
    assert _parser("scale").parse_args(["--only", "0,9"]).only == [0, 9]
    wheel = _parser("space_bandits_wheel").parse_args(["--deltas", "0.5, 0.99", "--step-decay", "0",
                                                       "--batch", "1"])
    assert wheel.deltas == [0.5, 0.99] and wheel.step_decay == 0.0 and wheel.batch == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="the message for a machine without CUDA")
@pytest.mark.parametrize("name", ["gpu", "neural_speed", "decision_profile"])
def test_benchmark_names_a_missing_cuda_device_as_a_bad_option(name, capsys):
    with pytest.raises(SystemExit) as exc:
        _parser(name).parse_args(["--device", "cuda"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --device: device 'cuda' requested but CUDA is not available here" in err


def test_the_nonlinear_comparison_script_reproduces_a_readme_number(tmp_path, capsys):
    # experiments/nonlinear/compare.py is where the README's Nonlinear-v0 numbers come from
    spec = importlib.util.spec_from_file_location("nonlinear_compare", ROOT / "experiments" / "nonlinear" / "compare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--rows", "scale=5: shared LinUCB", "--out", str(tmp_path), "--jobs", "1"]) == 0
    table = capsys.readouterr().out
    assert "scale=5  16,000     shared LinUCB  1,222" in table, table
    assert "(`scale=5`: shared LinUCB 1,222" in (ROOT / "README.md").read_text()
