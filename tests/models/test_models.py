"""The built-in models honour the contract: shapes, embeddings, seeded initialisation, devices."""

import numpy as np
import pytest
import torch

from banditrec.models import (
    MatrixFactorization,
    MLPScorer,
    MultiOutputMLP,
    TwoTower,
    build_model,
    check_scores,
    resolve_device,
)

B, K, DU, DI = 3, 5, 4, 6


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(B, DU, generator=g),
        torch.randn(B, K, DI, generator=g),
        torch.randint(0, 50, (B, K), generator=g),
        torch.tensor([-1, 3, 70]),  # anonymous, known, beyond the table (hashed)
    )


MODELS = {
    "mlp": lambda seed: MLPScorer(DU, DI, hidden=(16, 8), seed=seed),
    "two_tower_dot": lambda seed: TwoTower(DU, DI, hidden=(8,), n_users=10, n_items=20, seed=seed),
    "two_tower_mlp": lambda seed: TwoTower(DU, DI, hidden=(8,), head="mlp", seed=seed),
    "mf": lambda seed: MatrixFactorization(n_users=10, n_items=20, dim=8, seed=seed),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_scores_and_embedding_shapes(name):
    model = MODELS[name](0)
    scores = model(*inputs())
    emb = model.embed(*inputs())
    assert scores.shape == (B, K)
    assert emb.shape == (B, K, 8) and model.embedding_dim == 8
    assert torch.isfinite(scores).all()
    # The score is linear in the embedding: the head reproduces forward from embed.
    torch.testing.assert_close(model.head(emb, inputs()[2], inputs()[3]), scores)


@pytest.mark.parametrize("name", list(MODELS))
def test_same_seed_same_weights_and_global_rng_untouched(name):
    before = torch.random.get_rng_state()
    a, b, c = MODELS[name](7), MODELS[name](7), MODELS[name](8)
    assert torch.equal(torch.random.get_rng_state(), before), "construction consumed torch's global generator"
    for (k, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), k
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.state_dict().values(), c.state_dict().values()))


def test_mlp_cross_needs_equal_dims_and_uses_product():
    with pytest.raises(ValueError, match="cross=True needs user_dim == item_dim"):
        MLPScorer(3, 4, cross=True)
    m = MLPScorer(4, 4, hidden=(8,), cross=True, seed=0)
    assert m.body[0].in_features == 12


def test_build_model_by_name_and_errors():
    assert isinstance(build_model("mlp", DU, DI, (8,), seed=0), MLPScorer)
    assert build_model("two_tower", DU, DI, 8, seed=0, head="mlp").config["head"] == "mlp"
    mf = build_model("mf", DU, DI, (16,), seed=0)
    assert mf.embedding_dim == 16 and mf.config["n_items"] == 1024
    with pytest.raises(ValueError, match="unknown model 'gru'"):
        build_model("gru", DU, DI)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['heads'\] for model 'two_tower'"):
        build_model("two_tower", DU, DI, heads="dot")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"hidden": ()}, "hidden must be"),
        ({"hidden": (8, 0)}, "hidden must be"),
        ({"hidden": "64"}, "hidden must be"),
        ({"user_dim": -1}, "user_dim must be an int >= 0"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    args = {"user_dim": DU, "item_dim": DI, "hidden": (8,)} | kwargs
    with pytest.raises(ValueError, match=match):
        MLPScorer(**args)


def test_two_tower_rejects_unknown_head():
    with pytest.raises(ValueError, match="head must be one of"):
        TwoTower(DU, DI, head="cosine")


def test_mf_ids_share_rows_beyond_the_table_and_anonymous_users_row_zero():
    mf = MatrixFactorization(n_users=4, n_items=4, dim=2, seed=0)
    u, v, _, _ = inputs()
    ids = torch.tensor([[0, 4, 8, 1, 5]] * B)  # 0, 4 and 8 share a row (hashing into 4 rows)
    s = mf(u, v, ids, torch.tensor([-1, -1, 2]))
    assert s[0, 0] == s[0, 1] == s[0, 2]
    assert torch.equal(s[0], s[1])  # both anonymous


def test_resolve_device():
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        resolve_device("gpu")
    with pytest.raises(ValueError, match="unsupported device 'meta'"):
        resolve_device("meta")
    with pytest.raises(TypeError, match="device must be a string or a torch.device"):
        resolve_device(0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_requested_without_cuda_is_a_clear_error():
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")


def test_check_scores_names_expected_and_actual_shapes():
    with pytest.raises(
        ValueError, match=r"MyNet returned scores of shape \(3,\); expected \(B, K\) = \(3, 5\)"
    ):
        check_scores(torch.zeros(3), 3, 5, "MyNet")
    with pytest.raises(TypeError, match="must return a torch.Tensor"):
        check_scores(np.zeros((3, 5)), 3, 5, "MyNet")
    assert check_scores(torch.zeros(3, 5), 3, 5, "MyNet").shape == (3, 5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_models_run_on_cuda():
    model = MODELS["two_tower_dot"](0).to("cuda")
    out = model(*(x.to("cuda") for x in inputs()))
    assert out.device.type == "cuda" and out.shape == (B, K)


def test_torch_threads_scopes_the_setting():
    from banditrec.models import torch_threads

    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
    # 0 is None as a TOML config can write it (TOML has no null): torch's setting is left alone
    torch.set_num_threads(2)
    try:
        with torch_threads(0):
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match=r"num_threads must be a positive int, or 0 or None to leave torch's "
                                         r"setting, got -1"), torch_threads(-1):
        pass


def test_glorot_init_is_tf1s_default():
    """MultiOutputMLP(init="glorot"): Glorot-uniform weights within ±√(6/(fan_in+fan_out)), zero
    biases; reproducible from the seed; recorded in the config so a checkpoint rebuilds it."""
    from banditrec.models import MultiOutputMLP

    net = MultiOutputMLP(2, 0, (50,), n_items=5, init="glorot", seed=0)
    layer = net.body[0]
    bound = (6.0 / (2 + 50)) ** 0.5
    top = float(layer.weight.detach().abs().max())
    assert 0.8 * bound < top <= bound
    assert not layer.bias.detach().any() and not net.out.bias.detach().any()
    again = MultiOutputMLP(2, 0, (50,), n_items=5, init="glorot", seed=0)
    assert torch.equal(layer.weight, again.body[0].weight)
    assert net.config["init"] == "glorot" and "init" not in MultiOutputMLP(2, 0, (50,), n_items=5).config
    with pytest.raises(ValueError, match=r"^init must be one of \('torch', 'glorot', 'uniform'\), got 'he'$"):
        MultiOutputMLP(2, 0, (50,), n_items=5, init="he")


def test_uniform_init_is_riquelme_et_als_init_scale():
    """MultiOutputMLP(init="uniform", init_scale=0.3): every layer's weights uniform in ±0.3 and
    zero biases, as the paper's code builds its networks; scale recorded for checkpoints."""
    from banditrec.models import MultiOutputMLP

    net = MultiOutputMLP(2, 0, (50,), n_items=5, init="uniform", init_scale=0.3, seed=0)
    for layer in (net.body[0], net.out):
        top = float(layer.weight.detach().abs().max())
        assert 0.25 < top <= 0.3
        assert not layer.bias.detach().any()
    assert net.config["init"] == "uniform" and net.config["init_scale"] == 0.3
    wide = MultiOutputMLP(2, 0, (50,), n_items=5, init="uniform", init_scale=1.0, seed=0)
    assert float(wide.body[0].weight.detach().abs().max()) > 0.9
    with pytest.raises(ValueError, match=r"^init_scale must be a number > 0 and finite, got 0.0$"):
        MultiOutputMLP(2, 0, (50,), n_items=5, init="uniform", init_scale=0.0)


def test_an_infinite_init_scale_and_a_negative_seed_are_one_clear_line():
    from banditrec.models import MultiOutputMLP, make_generator

    # torch's "from is out of bounds for float" from inside nn.init.uniform_, and numpy's
    # "expected non-negative integer" from inside SeedSequence
    with pytest.raises(ValueError, match="init_scale must be a number > 0 and finite, got inf"):
        MultiOutputMLP(2, 0, (50,), n_items=5, init="uniform", init_scale=float("inf"))
    with pytest.raises(ValueError, match="seed must be an int >= 0, got -1"):
        make_generator(-1)
    with pytest.raises(ValueError, match="seed must be an int >= 0, got -1"):
        MLPScorer(2, 2, (4,), seed=-1)


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        # accepted before and taken by truthiness: "no" (or 1) turned the product on
        (lambda: MLPScorer(DU, DU, cross="no"), TypeError, r"^cross must be True or False, got 'no'$"),
        (lambda: MLPScorer(DU, DU, cross=1), TypeError, r"^cross must be True or False, got 1$"),
        (lambda: MLPScorer(DU, DI, hidden=(True,)), ValueError, r"^hidden must be .*, got \(True,\)$"),
        (lambda: MLPScorer(True, DI), ValueError, r"^user_dim must be an int >= 0, got True$"),
        (lambda: TwoTower(DU, DI, n_users=True), ValueError, r"^n_users must be an int >= 0, got True$"),
        (lambda: TwoTower(DU, DI, n_items=-1), ValueError, r"^n_items must be an int >= 0, got -1$"),
        (lambda: TwoTower(DU, DI, id_dim=0), ValueError, r"^id_dim must be an int >= 1, got 0$"),
        (lambda: TwoTower(DU, DI, head=["dot"]), ValueError, r"^head must be one of \('dot', 'mlp'\), got \['dot'\]$"),
        (lambda: MatrixFactorization(n_users=True, n_items=3), ValueError, r"^n_users must be an int >= 1, got True$"),
        (lambda: MatrixFactorization(n_users=3, n_items=0), ValueError, r"^n_items must be an int >= 1, got 0$"),
        (lambda: MatrixFactorization(3, 3, dim=True), ValueError, r"^dim must be an int >= 1, got True$"),
        (lambda: MultiOutputMLP(DU, 0, n_items=True), ValueError, r"^n_items must be an int >= 1, got True$"),
        # the error named "linear init" / "init scale", arguments MultiOutputMLP does not have
        (lambda: MultiOutputMLP(DU, 0, n_items=2, init=None), ValueError, r"^init must be one of .*, got None$"),
        (lambda: MultiOutputMLP(DU, 0, n_items=2, init_scale=float("nan")), ValueError,
         r"^init_scale must be a number > 0 and finite, got nan$"),
        (lambda: MultiOutputMLP(DU, 0, n_items=2, init_scale=True), ValueError,
         r"^init_scale must be a number > 0 and finite, got True$"),
    ],
)
def test_constructors_refuse_bad_arguments_in_one_line_naming_them(make, error, message):
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize(
    ("kind", "options", "error", "message"),
    [
        ("multi_output", {"n_items": 0}, ValueError, r"model_options\['n_items'\] must be an int >= 1, got 0"),
        ("multi_output", {"n_items": True}, ValueError, r"model_options\['n_items'\] must be an int >= 1, got True"),
        ("multi_output", {"n_items": 5, "init": "xavier"}, ValueError,
         r"model_options\['init'\] must be one of \('torch', 'glorot', 'uniform'\), got 'xavier'"),
        ("multi_output", {"n_items": 5, "init_scale": float("inf")}, ValueError,
         r"model_options\['init_scale'\] must be a number > 0 and finite, got inf"),
        ("mlp", {"cross": "yes"}, TypeError, r"model_options\['cross'\] must be True or False, got 'yes'"),
        ("two_tower", {"head": "cosine"}, ValueError, r"model_options\['head'\] must be one of \('dot', 'mlp'\), got 'cosine'"),
        ("two_tower", {"n_users": -1}, ValueError, r"model_options\['n_users'\] must be an int >= 0, got -1"),
        ("two_tower", {"id_dim": True}, ValueError, r"model_options\['id_dim'\] must be an int >= 1, got True"),
        ("mf", {"n_items": 0}, ValueError, r"model_options\['n_items'\] must be an int >= 1, got 0"),
    ],
)
def test_check_model_options_checks_values_without_the_feature_sizes(kind, options, error, message):
    from banditrec.models.build import check_model_options

    with pytest.raises(error, match=f"^{message}$"):
        check_model_options(kind, options)
    with pytest.raises(error, match=f"^{message}$"):  # build_model says the same, before building
        build_model(kind, DU, DI, (8,), seed=0, **options)


def test_check_model_options_leaves_what_needs_the_feature_sizes_to_the_build():
    from banditrec.models.build import check_model_options

    assert check_model_options("mlp", {"cross": True}) is MLPScorer  # needs user_dim == item_dim
    with pytest.raises(ValueError, match="cross=True needs user_dim == item_dim"):
        build_model("mlp", DU, DI, (8,), cross=True)
    # unknown keys of mixed types are listed, not a TypeError from sorting them
    with pytest.raises(ValueError, match=r"unknown option\(s\) \[1, 'x'\] for model 'mlp'"):
        check_model_options("mlp", {1: 0, "x": 0})


@pytest.mark.parametrize("make", [
    lambda: MatrixFactorization(10**9, 10, dim=32),
    lambda: TwoTower(3, 3, n_items=10**9),
    lambda: MultiOutputMLP(3, 0, hidden=(64,), n_items=10**8),
], ids=["mf", "two_tower", "multi_output"])
def test_a_model_too_large_to_mean_is_refused_before_any_allocation(make):
    # 10**9 ids at dim 32 asked the allocator for 123 GiB: torch's "can't allocate", or swapping
    with pytest.raises(ValueError, match=r"would hold [\d,.]+ GiB of weights \(the limit is 4 GiB\); id tables"):
        make()
