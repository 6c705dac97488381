"""Open Bandit Pipeline's evaluation protocol on the Open Bandit Dataset sample.

ZOZOTOWN ran two policies side by side on the same traffic: a uniformly random one and Bernoulli
Thompson sampling (BTS). The protocol of Saito et al. (2021) estimates BTS's click rate from the
*random* policy's logs with every off-policy estimator and compares each estimate with BTS's
actual, on-policy click rate in its own logs: the "ground truth".

1. Load campaign ``all`` of the Open Bandit Dataset (``banditrec.data.load_open_bandit_dataset``:
   the 10,000-round sample shipped in the ``obp==0.4.1`` wheel, unless a full copy is configured).
2. BTS's action distribution: ZOZOTOWN's production Beta prior (``obp/policy/conf/prior_bts.yaml``
   in the obp wheel, read from an installed obp or the wheel, never imported) drives a Monte-Carlo
   simulation of the policy, exactly as OBP's ``BernoulliTS.compute_batch_action_dist``: draw a
   click rate per item from its Beta, rank the items, and count how often each item lands in
   each of the 3 positions. The result pi(item | position) is the same for every round; a round
   logged at position p is evaluated with column p, as OBP's ``action_dist[:, :, position]``.
3. Every estimator (reward model: cross-fitted ridge on user x item features, item and position
   one-hots) with a 95% bootstrap interval, and its relative error |V_hat - V_bts| / V_bts on
   the whole random log and, as OBP reports it, its mean and standard deviation over bootstrap
   resamples of the random log (here with the reward model held fixed; OBP refits it per run).

Run from the repository root::

    python experiments/ope/obd_protocol.py

Outputs ``OUT/obd_protocol.csv`` (overall), ``OUT/obd_protocol_by_position.csv``, ``OUT/obd_protocol.png``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from banditrec.data import _fetch, load_open_bandit_dataset
from banditrec.ope import compare_policies, default_estimators, fit_reward_model, plot_comparison
from banditrec.ope.intervals import bootstrap_interval

OBP_REQUIREMENT = "obp==0.4.1"
PRIOR_MEMBER = "obp/policy/conf/prior_bts.yaml"
PRIOR_SHA256 = "81a54fbdc184021ccc62ab97de81ec35461c032e3d7f99ccaa0a9745f732d251"  # as in obp 0.4.1


@dataclass
class Args:
    """Command-line arguments (``--name value``)."""

    campaign: str = "all"
    """Open Bandit Dataset campaign: all, men or women."""
    n_sim: int = 100_000
    """Monte-Carlo rankings drawn to compute BTS's action distribution (OBP's default)."""
    n_bootstrap: int = 1_000
    """Bootstrap resamples per interval, and OBP-style runs for the mean relative error."""
    alpha: float = 0.05
    """Intervals are (1 - alpha) two-sided."""
    seed: int = 12345
    """Seed of the Monte-Carlo simulation, the bootstrap and the reward model's folds."""
    prior: str = ""
    """prior_bts.yaml or an obp wheel to read it from; empty: an installed obp, else `pip download`."""
    out: str = "experiments/ope/results/obd"
    """Output folder."""


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in fields(Args):
        default = getattr(Args(), f.name)
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=type(default), default=default)
    return Args(**vars(parser.parse_args()))


def read_prior_bytes(source: str) -> tuple[bytes, str]:
    """prior_bts.yaml's bytes and where they came from: a file, a wheel, an installed obp, PyPI."""
    if source:
        path = Path(source)
        if path.suffix == ".whl":
            with zipfile.ZipFile(path) as wheel:
                return wheel.read(PRIOR_MEMBER), f"{path}!{PRIOR_MEMBER}"
        return path.read_bytes(), str(path)
    try:
        path = _fetch.installed_package_dir("obp") / "policy" / "conf" / "prior_bts.yaml"
        return path.read_bytes(), str(path)
    except FileNotFoundError:
        pass
    with tempfile.TemporaryDirectory(prefix="banditrec-obp-") as tmp:
        wheel_path = _fetch.pip_download_wheel(OBP_REQUIREMENT, Path(tmp))
        with zipfile.ZipFile(wheel_path) as wheel:
            return wheel.read(PRIOR_MEMBER), f"PyPI {wheel_path.name}!{PRIOR_MEMBER}"


def parse_prior(text: str) -> dict[str, dict[str, np.ndarray]]:
    """The two-level YAML of prior_bts.yaml (campaign -> alpha/beta -> list of numbers).

    The file is this one simple shape, so a few lines replace a YAML dependency.
    """
    prior: dict[str, dict[str, list[float]]] = {}
    campaign = key = None
    for line in text.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        token = line.strip()
        if token.startswith("- "):
            prior[campaign][key].append(float(token[2:]))
        elif indent == 0 and token.endswith(":"):
            campaign = token[:-1]
            prior[campaign] = {}
        elif token.endswith(":"):
            key = token[:-1]
            prior[campaign][key] = []
        else:
            raise ValueError(f"unexpected line in prior_bts.yaml: {line!r}")
    return {c: {k: np.asarray(v) for k, v in table.items()} for c, table in prior.items()}


def bts_action_dist(
    alpha: np.ndarray, beta: np.ndarray, len_list: int, n_sim: int, rng: np.random.Generator
) -> np.ndarray:
    """pi(item, position) of Bernoulli TS with a Beta(alpha, beta) posterior, shape (n_items, len_list).

    Each simulation draws one click rate per item and ranks the items by it (OBP's
    ``select_action``: ``argsort()[::-1][:len_list]``); the share of simulations that put item a
    at position p estimates pi(a | p).
    """
    n_items = alpha.size
    counts = np.zeros((n_items, len_list))
    for start in range(0, n_sim, 10_000):
        size = min(10_000, n_sim - start)
        draws = rng.beta(alpha, beta, size=(size, n_items))
        top = np.argsort(-draws, axis=1)[:, :len_list]
        for p in range(len_list):
            counts[:, p] += np.bincount(top[:, p], minlength=n_items)
    return counts / n_sim


if __name__ == "__main__":
    args = parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rng = np.random.default_rng(args.seed)

    dataset = load_open_bandit_dataset(args.campaign)
    random_log = dataset.to_logged_feedback("random")
    bts_log = dataset.to_logged_feedback("bts")
    n_positions = int(max(random_log.positions.max(), bts_log.positions.max())) + 1

    prior_bytes, prior_source = read_prior_bytes(args.prior)
    digest = hashlib.sha256(prior_bytes).hexdigest()
    if digest != PRIOR_SHA256:
        print(f"warning: {prior_source} has sha256 {digest}, not obp 0.4.1's {PRIOR_SHA256}")
    prior = parse_prior(prior_bytes.decode())[args.campaign]
    if prior["alpha"].size != dataset.n_items:
        raise SystemExit(f"the prior has {prior['alpha'].size} items, the {args.campaign} campaign {dataset.n_items}")
    pi_item_position = bts_action_dist(prior["alpha"], prior["beta"], n_positions, args.n_sim, rng)
    # OBP's layout (n_rounds, n_actions, len_list); each round is read at its own position.
    action_dist = np.broadcast_to(pi_item_position, (random_log.n_rounds,) + pi_item_position.shape)

    # Ground truth: BTS's on-policy click rate, with a bootstrap interval for its own noise.
    truth = float(bts_log.rewards.mean())
    truth_low, truth_high = bootstrap_interval(
        bts_log.rewards[:, None], lambda m: m[..., 0], alpha=args.alpha, n_bootstrap=args.n_bootstrap, seed=args.seed
    )

    q_hat = fit_reward_model(random_log, seed=args.seed)
    estimators = default_estimators()
    table = compare_policies(
        random_log, {"bts": action_dist}, estimators, alpha=args.alpha, seed=args.seed,
        n_bootstrap=args.n_bootstrap, estimated_rewards=q_hat, true_values={"bts": truth},
    )
    table["relative_error"] = (table["estimate"] - truth).abs() / truth
    # OBP's summary: relative error over bootstrap resamples of the log (same resamples for all).
    resamples = np.random.default_rng(args.seed).integers(0, random_log.n_rounds, (args.n_bootstrap, random_log.n_rounds))
    boot_mean, boot_sd = [], []
    for est in estimators:
        terms = est.round_terms(random_log, action_dist, estimated_rewards=q_hat)
        columns = terms.columns()
        values = np.array([terms.value(columns[idx].mean(axis=0)) for idx in resamples])
        errors = np.abs(values[np.isfinite(values)] - truth) / truth
        boot_mean.append(errors.mean())
        boot_sd.append(errors.std(ddof=1))
    table["relative_error_boot_mean"] = boot_mean
    table["relative_error_boot_sd"] = boot_sd
    table["ci_contains_truth"] = (table["low"] <= truth) & (truth <= table["high"])
    table.to_csv(out / "obd_protocol.csv", index=False)
    plot_comparison(table, out / "obd_protocol.png")

    per_position = []
    for p in range(n_positions):
        rows = random_log.positions == p
        truth_p = float(bts_log.rewards[bts_log.positions == p].mean())
        part = compare_policies(
            random_log[rows], {"bts": action_dist[rows]}, estimators, alpha=args.alpha, seed=args.seed,
            n_bootstrap=args.n_bootstrap, estimated_rewards=q_hat[rows], true_values={"bts": truth_p},
        )
        per_position.append(part.assign(position=p, relative_error=(part["estimate"] - truth_p).abs() / truth_p))
    by_position = pd.concat(per_position, ignore_index=True)
    by_position.to_csv(out / "obd_protocol_by_position.csv", index=False)
    elapsed = time.perf_counter() - start

    manifest = {
        "args": asdict(args),
        "data_sources": dict(dataset.sources),
        "prior_source": prior_source,
        "prior_sha256": digest,
        "random_rounds": random_log.n_rounds,
        "bts_rounds": bts_log.n_rounds,
        "random_click_rate": float(random_log.rewards.mean()),
        "bts_click_rate": truth,
        "bts_click_rate_interval": [truth_low, truth_high],
        "bts_click_rate_by_position": [float(bts_log.rewards[bts_log.positions == p].mean()) for p in range(n_positions)],
        "wall_seconds": elapsed,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    pd.set_option("display.width", 160)
    print(f"random log: {random_log.n_rounds} rounds, click rate {random_log.rewards.mean():.5f}")
    print(f"bts log:    {bts_log.n_rounds} rounds, click rate {truth:.5f} "
          f"(95% interval {truth_low:.5f} - {truth_high:.5f})  <- ground truth")
    print(f"BTS pi(item | position): max {pi_item_position.max():.3f}, "
          f"items with pi > 1% at position 0: {int((pi_item_position[:, 0] > 0.01).sum())}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.5f}"))
    print(by_position.pivot(index="estimator", columns="position", values="relative_error")
          .loc[[e.name for e in estimators]].to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"\n{elapsed:.0f} s; results in {out}/")
