"""Supervised pretraining from logs: it learns, splits reproducibly, and stops on NaN with the step."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from banditrec.models import LogArrays, MLPScorer, as_log_arrays, pretrain, roc_auc


def click_logs(n=3000, seed=0, d=4):
    rng = np.random.default_rng(seed)
    u, v = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    p = 1 / (1 + np.exp(-3 * (u * v).sum(1)))  # a pure interaction: invisible to a linear model of [u, v]
    return {
        "user_features": u,
        "item_features": v,
        "item_ids": rng.integers(0, 10, n),
        "user_ids": np.full(n, -1),
        "rewards": (rng.random(n) < p).astype(float),
    }


def test_clicks_learn_an_interaction_with_bce_and_report_auc():
    model, metrics = pretrain(
        MLPScorer(4, 4, hidden=(32,), seed=0), click_logs(), lr=1e-2, epochs=40, seed=0, device="cpu"
    )
    assert metrics["loss"] == "bce"
    assert metrics["n_train"] == 2400 and metrics["n_val"] == 300 and metrics["n_test"] == 300
    assert metrics["test_auc"] > 0.8, metrics
    assert 1 <= metrics["best_epoch"] <= metrics["epochs_run"] <= 40
    assert not model.training


def test_ratings_use_mse_and_early_stopping_restores_the_best_weights():
    logs = click_logs(800)
    logs["rewards"] = logs["rewards"] * 4 + 1  # ratings 1 or 5
    _model, metrics = pretrain(
        MLPScorer(4, 4, hidden=(32,), seed=0), logs, lr=3e-2, epochs=200, patience=3, seed=0, device="cpu"
    )
    assert metrics["loss"] == "mse" and "test_auc" not in metrics
    assert metrics["epochs_run"] == metrics["best_epoch"] + 3 < 200  # stopped early
    assert np.isfinite(metrics["test_loss"])


def test_same_seed_same_split_and_model():
    runs = [
        pretrain(MLPScorer(4, 4, hidden=(8,), seed=1), click_logs(500), epochs=3, seed=5, device="cpu")
        for _ in range(2)
    ]
    assert runs[0][1] == runs[1][1]
    for a, b in zip(runs[0][0].parameters(), runs[1][0].parameters()):
        assert torch.equal(a, b)


def test_feedback_object_takes_the_chosen_candidate():
    rng = np.random.default_rng(0)
    fb = SimpleNamespace(
        user_features=rng.standard_normal((6, 2)),
        item_features=rng.standard_normal((6, 3, 4)),
        item_ids=np.arange(18).reshape(6, 3),
        user_ids=np.arange(6),
        actions=np.array([0, 1, 2, 0, 1, 2]),
        rewards=np.ones(6),
    )
    logs = as_log_arrays(fb)
    assert logs.item_features.shape == (6, 4)
    np.testing.assert_array_equal(logs.item_ids, [0, 4, 8, 9, 13, 17])
    np.testing.assert_array_equal(logs.item_features[1], fb.item_features[1, 1])


@pytest.mark.parametrize(
    "change, error, match",
    [
        ({"rewards": np.array([0.0, np.nan, 1.0])}, ValueError, "rewards contain NaN or inf at rows \\[1\\]"),
        ({"item_ids": np.zeros(2)}, ValueError, "item_ids must have shape \\(3,\\)"),
        ({"user_features": np.zeros((3,))}, ValueError, "user_features must have shape \\(3, d\\)"),
    ],
)
def test_log_arrays_validation(change, error, match):
    base = {
        "user_features": np.zeros((3, 2)),
        "item_features": np.zeros((3, 2)),
        "item_ids": np.zeros(3),
        "user_ids": np.zeros(3),
        "rewards": np.zeros(3),
    }
    with pytest.raises(error, match=match):
        LogArrays(**(base | change))


def test_argument_validation():
    with pytest.raises(ValueError, match="val_fraction must lie in \\[0, 1\\), got 1.5"):
        pretrain(MLPScorer(4, 4), click_logs(50), val_fraction=1.5)
    # 10% of 4 rows used to round to no validation row and switch early stopping off silently.
    with pytest.raises(ValueError, match="val_fraction=0.1 of 4 rows is no row"):
        pretrain(MLPScorer(4, 4), click_logs(4), val_fraction=0.1, test_fraction=0.0)
    with pytest.raises(ValueError, match="loss must be one of"):
        pretrain(MLPScorer(4, 4), click_logs(50), loss="hinge")
    with pytest.raises(TypeError, match="lacks attributes"):
        pretrain(MLPScorer(4, 4), object())


class _Exploding(nn.Module):
    """Finite for a while, then NaN: a stand-in for a diverging network."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.calls = 0

    def forward(self, user, items, item_ids, user_ids):
        self.calls += 1
        out = items.sum(-1) * self.w
        return out * float("nan") if self.calls == 4 else out


def test_nan_loss_names_the_epoch_and_step():
    with pytest.raises(FloatingPointError, match="loss became nan at epoch 2, step 0"):
        pretrain(
            _Exploding(),
            click_logs(300),
            batch_size=100,
            val_fraction=0.0,
            test_fraction=0.0,
            seed=0,
            device="cpu",
        )


def test_roc_auc_matches_definition():
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert roc_auc(np.array([1, 0]), np.array([0.5, 0.5])) == 0.5
    assert np.isnan(roc_auc(np.ones(3), np.arange(3.0)))


class _NoParameters(nn.Module):
    def forward(self, user, items, item_ids, user_ids):
        return items.sum(-1)


@pytest.mark.parametrize(
    "model, options, error, message",
    [
        # used to run one epoch silently
        (None, {"epochs": True}, ValueError, "epochs must be a positive int, got True"),
        (None, {"patience": False}, ValueError, "patience must be a positive int, got False"),
        # these three used to be "TypeError: '<=' not supported between instances of 'float' and 'str'"
        (None, {"val_fraction": "0.1"}, TypeError, "val_fraction must be a number, got '0.1'"),
        (None, {"lr": "0.01"}, TypeError, "lr must be a number, got '0.01'"),
        (None, {"weight_decay": "0"}, TypeError, "weight_decay must be a number, got '0'"),
        # torch's "Invalid weight_decay value: -1"
        (None, {"weight_decay": -1}, ValueError, "weight_decay must be >= 0 and finite, got -1"),
        # torch's "mat1 and mat2 must have the same dtype", once training had started
        ("double", {}, TypeError, r"model MLPScorer has torch.float64 parameters; .* pass model.float\(\)"),
        # torch's "optimizer got an empty parameter list"
        ("empty", {}, ValueError, "model _NoParameters has no trainable parameters"),
    ],
)
def test_bad_arguments_are_one_clear_line(model, options, error, message):
    net = {None: MLPScorer(4, 4, hidden=(4,)), "double": MLPScorer(4, 4, hidden=(4,)).double(),
           "empty": _NoParameters()}[model]
    with pytest.raises(error, match=message) as info:
        pretrain(net, click_logs(50), **({"epochs": 2, "seed": 0, "device": "cpu"} | options))
    assert "\n" not in str(info.value)


def test_the_trained_model_records_its_loss():
    model, _ = pretrain(MLPScorer(4, 4, hidden=(4,), seed=0), click_logs(100), epochs=2, seed=0, device="cpu")
    assert model.banditrec_loss == "bce"  # clicks: "auto" resolves to BCE
    ratings = click_logs(100)
    ratings["rewards"] = ratings["rewards"] * 4 + 1
    model, _ = pretrain(MLPScorer(4, 4, hidden=(4,), seed=0), ratings, epochs=2, seed=0, device="cpu")
    assert model.banditrec_loss == "mse"


def _feedback(**change):
    rng = np.random.default_rng(0)
    fields = {
        "user_features": rng.standard_normal((4, 2)),
        "item_features": rng.standard_normal((4, 3, 2)),
        "item_ids": np.arange(12).reshape(4, 3),
        "user_ids": np.arange(4),
        "actions": np.array([0, 1, 2, 1]),
        "rewards": np.ones(4),
    }
    return SimpleNamespace(**(fields | change))


@pytest.mark.parametrize(
    "change, error, match",
    [
        # -1 used to take each row's last candidate and 0.7 its first, silently
        ({"actions": np.array([0, -1, 2, 1])}, ValueError,
         r"actions must be candidate indices in \[0, 3\), got range \[-1, 2\]"),
        ({"actions": np.array([0.0, 0.7, 2.0, 1.0])}, ValueError,
         r"actions must hold integers, got 0.7 at index \[1\]"),
        # numpy's "index 3 is out of bounds for axis 1 with size 3"
        ({"actions": np.array([0, 3, 2, 1])}, ValueError,
         r"actions must be candidate indices in \[0, 3\), got range \[0, 3\]"),
        ({"actions": np.array([0, 1])}, ValueError,
         r"actions must have shape \(4,\) to match its item_ids, got \(2,\)"),
    ],
)
def test_a_feedback_object_with_bad_actions_is_refused(change, error, match):
    with pytest.raises(error, match=match) as info:
        as_log_arrays(_feedback(**change))
    assert "\n" not in str(info.value)
    whole = as_log_arrays(_feedback(actions=np.array([0.0, 1.0, 2.0, 1.0])))  # whole floats are indices
    np.testing.assert_array_equal(whole.item_ids, [0, 4, 8, 10])


@pytest.mark.parametrize("name", ["item_ids", "user_ids"])
@pytest.mark.parametrize("bad, match", [(2.5, r"got 2.5 at index \[1\]"), (np.nan, r"got nan at index \[1\]")])
def test_log_arrays_refuse_ids_that_are_not_integers(name, bad, match):
    # the cast to int64 made 2.5 id 2 and NaN id -2**63 (an anonymous user to the models), silently
    ids = np.array([0.0, bad, 1.0])
    logs = {"user_features": np.zeros((3, 2)), "item_features": np.zeros((3, 2)), "item_ids": np.zeros(3),
            "user_ids": np.zeros(3), "rewards": np.zeros(3)}
    with pytest.raises(ValueError, match=f"{name} must hold integers, {match}"):
        LogArrays(**(logs | {name: ids}))
    with pytest.raises(TypeError, match=f"{name} must hold integers, got dtype <U1"):
        LogArrays(**(logs | {name: np.array(["a", "b", "c"])}))


class _WithDropout(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 1))

    def forward(self, user, items, item_ids, user_ids):
        u = user[:, None, :].expand(-1, items.shape[1], -1)
        return self.net(torch.cat([u, items], -1))[..., 0]


def _dropout_model():
    with torch.random.fork_rng(devices=[]):  # the same initial weights whatever the global state
        torch.manual_seed(0)
        return _WithDropout()


def test_the_seed_fixes_dropout_and_leaves_torchs_global_generator_alone():
    # Dropout drew its masks from torch's global generator: the same seed gave other weights
    # whenever anything else had used it before.
    runs = []
    for noise in (0, 7):
        torch.manual_seed(noise)
        state = torch.get_rng_state()
        runs.append(pretrain(_dropout_model(), click_logs(400), epochs=3, seed=5, device="cpu"))
        assert torch.equal(torch.get_rng_state(), state)  # the caller's generator is not consumed
    assert runs[0][1] == runs[1][1]
    for a, b in zip(runs[0][0].parameters(), runs[1][0].parameters(), strict=True):
        assert torch.equal(a, b)
