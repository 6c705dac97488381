"""The ``banditrec`` command answers help and usage errors without loading torch, pandas or scipy,
and ``import banditrec`` still registers the Gymnasium ids, as cheaply."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "pandas", "scipy")

# A fresh interpreter: in this one the test-suite has imported everything already.
CLI = f"""
import json, sys
from banditrec.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({{"code": code, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""


def _cli(*argv: str) -> tuple[dict, str]:
    done = subprocess.run([sys.executable, "-c", CLI, *argv], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    *printed, last = done.stdout.splitlines()
    return json.loads(last), "\n".join(printed) + done.stderr


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["ope", "--help"], ["plot", "--help"]])
def test_help_does_not_load_heavy_libraries(argv):
    result, printed = _cli(*argv)
    assert result == {"code": 0, "heavy": []}
    assert printed.startswith(f"usage: banditrec {' '.join(argv[:-1])}".rstrip()), printed


@pytest.mark.parametrize("argv, message", [
    (["run"], "the following arguments are required: config"),
    (["run", "x.toml", "--seeds", "0"], "argument --seeds: expected a positive integer, got 0"),
    (["no-such-command"], "invalid choice: 'no-such-command'"),
])
def test_usage_errors_do_not_load_heavy_libraries(argv, message):
    result, printed = _cli(*argv)
    assert result == {"code": 2, "heavy": []}
    assert message in printed, printed


def test_a_missing_config_file_is_one_line_without_heavy_libraries(tmp_path):
    missing = tmp_path / "missing.toml"
    result, printed = _cli("run", str(missing))
    assert result == {"code": 2, "heavy": []}
    assert printed == f"banditrec: error: config file not found: {missing}\n", printed


def test_import_banditrec_registers_the_worlds_for_gymnasium_without_loading_them():
    # `import banditrec` registers stand-ins; the first make loads the worlds, whose registration
    # replaces them: the env is the one the real registration makes, with the same seed the same.
    code = """
import json, sys
import gymnasium as gym
import numpy as np
import banditrec

heavy = [m for m in ("torch", "pandas", "scipy") if m in sys.modules]
ids = sorted(k for k in gym.registry if k.startswith("banditrec/"))
first = gym.make_vec("banditrec/Wheel-v0", num_envs=3, vectorization_mode="vector_entry_point")
from banditrec.environments import BanditEnv, BanditVectorEnv, registered_ids
second = gym.make_vec("banditrec/Wheel-v0", num_envs=3, vectorization_mode="vector_entry_point")
obs = [env.reset(seed=5)[0] for env in (first, second)]
steps = [env.step(np.zeros(3, dtype=np.int64)) for env in (first, second)]
single = gym.make("banditrec/Linear-v0", n_items=5)
print(json.dumps({
    "heavy": heavy, "ids": ids, "registered": registered_ids(),
    "vector": [type(env).__name__ for env in (first, second)],
    "same": all(np.array_equal(obs[0][k], obs[1][k]) for k in obs[0]) and np.array_equal(steps[0][1], steps[1][1]),
    "single": type(single.unwrapped).__name__, "n_items": single.unwrapped.simulator.n_items,
}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    builtin = ["banditrec/Linear-v0", "banditrec/MovieLens100k-v0", "banditrec/Nonlinear-v0", "banditrec/Wheel-v0"]
    assert result == {
        "heavy": [], "ids": builtin, "registered": builtin, "vector": ["BanditVectorEnv", "BanditVectorEnv"],
        "same": True, "single": "BanditEnv", "n_items": 5,
    }
