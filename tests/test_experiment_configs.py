"""Every shipped experiment config parses and names known environments and policies."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from banditrec.config import load_config
from banditrec.environments import registered_ids
from banditrec.policies import policy_parameters

CONFIGS = [
    p for p in sorted((Path(__file__).resolve().parents[1] / "experiments").rglob("*.toml"))
    if "experiment" in tomllib.loads(p.read_text())  # target-policy lists for `banditrec ope` have no [experiment]
]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_is_valid(path):
    cfg = load_config(path)
    if cfg.environment.id is not None:
        assert cfg.environment.id in registered_ids()
    for spec in cfg.policies:
        if spec.type.startswith("banditrec") or ":" not in spec.type:
            assert set(spec.params) <= set(policy_parameters(spec.type)), spec.name


def test_quickstart_is_the_movielens_world():
    cfg = load_config(Path(__file__).resolve().parents[1] / "experiments" / "quickstart.toml")
    assert cfg.environment.id == "banditrec/MovieLens100k-v0" and len(cfg.seeds) >= 3
