"""Every damaged or foreign checkpoint is one ValueError, never a stray exception or silent misload."""

import pytest
import torch

from banditrec.models import build_model, load_model, save_model


def _same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_every_flipped_byte_and_every_truncation_is_refused_or_loads_the_saved_weights(tmp_path):
    # A flipped byte in a local header made zipfile's testzip raise a bare EOFError, and one in the
    # zip64 end record made is_zipfile raise BadZipFile: neither said which file was damaged.
    model = build_model("mlp", 3, 4, hidden=(8,), seed=0)
    model.banditrec_loss = "mse"
    raw = save_model(model, tmp_path / "m.pt").read_bytes()
    damaged = tmp_path / "d.pt"
    cases = [bytes(raw[:i]) for i in range(0, len(raw), 7)]
    for i in range(len(raw)):
        flipped = bytearray(raw)
        flipped[i] ^= 0xFF
        cases.append(bytes(flipped))
    loaded = 0
    for data in cases:
        damaged.write_bytes(data)
        fresh = build_model("mlp", 3, 4, hidden=(8,), seed=1)
        try:
            load_model(fresh, damaged)
        except ValueError as exc:
            assert str(damaged) in str(exc) and "\n" not in str(exc)
            continue
        assert _same_weights(fresh, model) and fresh.banditrec_loss == "mse"
        loaded += 1
    assert 0 < loaded < len(raw)  # flips in unused header fields are harmless; most are caught


def test_a_checkpoint_without_a_loss_clears_the_models_stale_one(tmp_path):
    # The model had been pretrained with BCE; the weights loaded into it had not. Keeping "bce" made
    # a loss="mse" policy refuse them, and a loss="bce" one read plain outputs as logits.
    model = build_model("mlp", 3, 4, hidden=(8,), seed=1)
    model.banditrec_loss = "bce"
    load_model(model, save_model(build_model("mlp", 3, 4, hidden=(8,), seed=2), tmp_path / "plain.pt"))
    assert not hasattr(model, "banditrec_loss")


def test_a_bare_state_dict_says_what_it_is_and_how_to_load_it(tmp_path):
    model = build_model("mlp", 3, 4, hidden=(8,), seed=0)
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    fresh = build_model("mlp", 3, 4, hidden=(8,), seed=1)
    with pytest.raises(ValueError, match=r"bare state_dict.*load_state_dict"):
        load_model(fresh, tmp_path / "sd.pt")


def test_weights_of_another_dtype_are_refused_not_cast(tmp_path):
    # load_state_dict casts: float64 weights loaded into a float32 model silently lost precision.
    model = build_model("mlp", 3, 4, hidden=(8,), seed=0).double()
    path = save_model(model, tmp_path / "d.pt")
    with pytest.raises(ValueError, match=r"out\.weight: torch\.float64 vs torch\.float32.*model\.double\(\)"):
        load_model(build_model("mlp", 3, 4, hidden=(8,), seed=1), path)
    again = load_model(build_model("mlp", 3, 4, hidden=(8,), seed=1).double(), path)
    assert _same_weights(again, model)
