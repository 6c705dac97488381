"""The custom-simulator page runs exactly as written: its code blocks are executed here."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

DOC = Path(__file__).resolve().parents[2] / "docs" / "custom_simulator.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_docs_example_runs_as_written(tmp_path):
    python_blocks, toml_blocks, bash_blocks = _blocks("python"), _blocks("toml"), _blocks("bash")
    assert len(python_blocks) == 2 and len(toml_blocks) == 1 and len(bash_blocks) == 1
    (tmp_path / "my_shop.py").write_text(python_blocks[0])
    (tmp_path / "shop.toml").write_text(toml_blocks[0])
    (tmp_path / "use_env.py").write_text(python_blocks[1])
    env = {"PYTHONPATH": str(tmp_path), "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "MPLBACKEND": "Agg"}
    use = subprocess.run([sys.executable, "use_env.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
                         check=False)
    assert use.returncode == 0, use.stderr
    command = bash_blocks[0].strip()
    assert command == "PYTHONPATH=. banditrec run shop.toml --out runs/shop"
    run = subprocess.run(
        [sys.executable, "-m", "banditrec.cli", "run", "shop.toml", "--out", "runs/shop", "--quiet"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert run.returncode == 0, run.stderr
    out = tmp_path / "runs" / "shop"
    assert (out / "regret.png").stat().st_size > 10_000
    summary = pd.read_csv(out / "summary.csv").set_index("policy")
    assert summary.loc["linucb", "final_cumulative_regret"] < 0.7 * summary.loc["random", "final_cumulative_regret"]
