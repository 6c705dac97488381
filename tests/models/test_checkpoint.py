"""Checkpoints round-trip and refuse a different architecture with a message that names the misfit."""

import os
import zipfile

import pytest
import torch

from banditrec.models import MLPScorer, MultiOutputMLP, TwoTower, build_model, load_model, save_model


def _inputs():
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(2, 4, generator=g),
        torch.randn(2, 3, 4, generator=g),
        torch.zeros(2, 3, dtype=torch.long),
        torch.full((2,), -1),
    )


def test_round_trip_restores_outputs(tmp_path):
    a = TwoTower(4, 4, hidden=(8,), n_items=5, head="mlp", seed=0)
    path = save_model(a, tmp_path / "sub" / "model.pt")
    b = TwoTower(4, 4, hidden=(8,), n_items=5, head="mlp", seed=1)
    assert not torch.equal(a(*_inputs()), b(*_inputs()))
    assert load_model(b, path) is b
    torch.testing.assert_close(a(*_inputs()), b(*_inputs()), rtol=0, atol=0)
    # The file is readable with weights_only=True (no pickled code).
    payload = torch.load(path, weights_only=True)
    assert payload["config"]["head"] == "mlp"


def test_different_width_names_the_mismatched_shapes(tmp_path):
    path = save_model(MLPScorer(4, 4, hidden=(8,), seed=0), tmp_path / "m.pt")
    with pytest.raises(
        ValueError, match=r"shape mismatches \[body\.0\.bias: checkpoint m\.pt .*\(8,\) vs model \(16,\)"
    ):
        load_model(MLPScorer(4, 4, hidden=(16,), seed=0), path)


def test_different_architecture_names_missing_and_unexpected_keys(tmp_path):
    path = save_model(MLPScorer(4, 4, hidden=(8,), seed=0), tmp_path / "m.pt")
    with pytest.raises(ValueError) as info:
        load_model(TwoTower(4, 4, hidden=(8,), seed=0), path)
    msg = str(info.value)
    assert "missing keys ['bias', 'item_tower.0.bias'" in msg
    assert "unexpected keys ['body.0.bias'" in msg
    assert "saved from banditrec.models.mlp.MLPScorer" in msg


def test_not_a_checkpoint(tmp_path):
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="is not a banditrec model checkpoint"):
        load_model(MLPScorer(4, 4), tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_model(MLPScorer(4, 4), tmp_path / "missing.pt")


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_checkpoint_is_one_clear_line(tmp_path, damage):
    """Used to be torch's "RuntimeError: PytorchStreamReader failed reading zip archive" (truncated)
    or "KeyError: 101" (garbage), neither naming the file."""
    path = save_model(MLPScorer(4, 4, hidden=(8,), seed=0), tmp_path / "m.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"garbage " * 100)
    with pytest.raises(ValueError) as info:
        load_model(MLPScorer(4, 4, hidden=(8,)), path)
    assert str(info.value) == (
        f"{str(path)!r} is not a readable banditrec model checkpoint (written by save_model): "
        "it is not a torch checkpoint archive (truncated, or another kind of file)"
    )


def test_damaged_checkpoint_entry_is_one_clear_line(tmp_path):
    path = save_model(MLPScorer(4, 4, hidden=(8,), seed=0), tmp_path / "m.pt")
    data = bytearray(path.read_bytes())
    start = data.find(b"data.pkl") + 40  # inside the pickled payload, past its local header
    data[start : start + 60] = bytes(b ^ 0xFF for b in data[start : start + 60])
    path.write_bytes(bytes(data))
    message = r"is not a readable banditrec model checkpoint \(written by save_model\)"
    with pytest.raises(ValueError, match=message) as info:
        load_model(MLPScorer(4, 4, hidden=(8,)), path)
    assert "\n" not in str(info.value)


def test_a_checkpoint_with_flipped_bytes_is_refused_not_loaded_as_nan(tmp_path):
    # torch.load does not check the archive's CRCs: 64 flipped bytes loaded as NaN weights.
    path = save_model(build_model("mlp", 6, 4, hidden=(8,), seed=0), tmp_path / "mlp.pt")
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 2: len(damaged) // 2 + 64] = b"\xff" * 64
    path.write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match=r"it is damaged \(entry .* fails its checksum\)"):
        load_model(build_model("mlp", 6, 4, hidden=(8,)), path)


def test_same_shapes_of_another_architecture_are_refused(tmp_path):
    # Names and shapes agree, the models do not: user and item features swapped, another class.
    swapped = save_model(MLPScorer(3, 5, hidden=8, seed=0), tmp_path / "a.pt")
    with pytest.raises(ValueError, match=r"built otherwise \(saved vs this model\): item_dim: 5 vs 3, user_dim: 3 vs 5"):
        load_model(MLPScorer(5, 3, hidden=8), swapped)
    other = save_model(MLPScorer(4, 0, hidden=8), tmp_path / "b.pt")
    with pytest.raises(ValueError, match="holds a MLPScorer, not a MultiOutputMLP"):
        load_model(MultiOutputMLP(4, 0, hidden=8, n_items=1), other)
    load_model(MLPScorer(3, 5, hidden=8, seed=1), swapped)  # the same architecture loads


class _Planted:
    """A pickle that, loaded with weights_only=False, would create ``target``."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_a_checkpoint_that_would_run_code_is_refused_without_advising_weights_only_false(tmp_path):
    # torch 2.13's refusal of a blocked global ("Weights only load failed ... unsupported GLOBAL
    # posix.system") used to be reported as damage, cut mid-way through its advice to pass weights_only=False.
    from banditrec.policies import make_policy
    from banditrec.policies.checkpoint import load_policy

    target = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"format": "banditrec-model", "state_dict": _Planted(target)}, path)
    with pytest.raises(ValueError) as info:
        load_model(MLPScorer(4, 4, hidden=(8,)), path)
    assert str(info.value) == (
        f"{str(path)!r} is not a readable banditrec model checkpoint (written by save_model): it holds "
        "objects other than tensors and plain containers (Trying to load unsupported GLOBAL posix.system "
        "whose module posix is blocked.)"
    )
    with pytest.raises(ValueError) as info:
        load_policy(make_policy("LinUCB", seed=0), path)
    message = str(info.value)
    assert message.startswith(f"{path} is not a readable banditrec policy checkpoint (written by save_policy): "
                              "it holds objects other than tensors and plain containers"), message
    assert "weights_only" not in message and "\n" not in message
    assert not target.exists()


def test_a_policy_checkpoint_given_to_load_model_says_to_use_load_policy(tmp_path):
    from banditrec.policies import make_policy
    from banditrec.policies.checkpoint import save_policy

    path = save_policy(make_policy("LinUCB", seed=0), tmp_path / "policy.pt")
    with pytest.raises(ValueError, match=r"is a policy checkpoint \(written by save_policy\), not a model "
                                         r"checkpoint; load it with banditrec.policies.load_policy"):
        load_model(MLPScorer(4, 4, hidden=(8,)), path)


def test_the_pretraining_loss_survives_a_round_trip_and_a_file_without_tensors_is_one_line(tmp_path):
    # pretrain records its loss so that a policy can check its own against it; a model saved and
    # loaded again had lost it, and a checkpoint without its tensors was a bare KeyError.
    a = MLPScorer(4, 4, hidden=(8,), seed=0)
    a.banditrec_loss = "bce"
    b = load_model(MLPScorer(4, 4, hidden=(8,), seed=1), save_model(a, tmp_path / "a.pt"))
    assert b.banditrec_loss == "bce"
    assert not hasattr(load_model(MLPScorer(4, 4, hidden=(8,)), save_model(MLPScorer(4, 4, hidden=(8,)), tmp_path / "c.pt")),
                       "banditrec_loss")
    payload = torch.load(tmp_path / "a.pt", weights_only=True)
    del payload["state_dict"], payload["_sha256"]  # written by something else: no digest to fail first
    torch.save(payload, tmp_path / "b.pt")
    with pytest.raises(ValueError, match="lacks its tensors"):
        load_model(MLPScorer(4, 4, hidden=(8,)), tmp_path / "b.pt")


def test_a_flipped_byte_in_the_archive_directory_is_refused_not_loaded_as_garbage(tmp_path):
    # The archive's CRCs cover its entries' bytes, not its central directory: flipping the
    # external-attributes byte of a tensor's record loaded that tensor from uninitialised memory
    # (weights of 1e34) with every CRC intact. The checkpoint's digest of its contents catches it.
    model = build_model("mlp", 3, 4, hidden=(8,), seed=0)
    raw = save_model(model, tmp_path / "m.pt").read_bytes()
    with zipfile.ZipFile(tmp_path / "m.pt") as archive:
        names = [info.filename for info in archive.infolist()]
    refused = 0
    start = raw.find(b"PK\x01\x02")
    for name in names:
        if "/data/" not in name:
            continue
        record = raw.find(b"PK\x01\x02", start)
        while raw[record + 46: record + 46 + len(name)] != name.encode():
            record = raw.find(b"PK\x01\x02", record + 4)
        damaged = bytearray(raw)
        damaged[record + 38] ^= 0xFF
        (tmp_path / "f.pt").write_bytes(bytes(damaged))
        fresh = build_model("mlp", 3, 4, hidden=(8,), seed=1)
        try:
            load_model(fresh, tmp_path / "f.pt")
        except ValueError:
            refused += 1
            continue
        for key, value in model.state_dict().items():  # loaded: then it must be the saved weights
            torch.testing.assert_close(fresh.state_dict()[key], value, rtol=0, atol=0)
    assert refused >= 1


@pytest.mark.parametrize(("where", "message"), [
    ("bogus", r"map_location: unknown device 'bogus'"),
    (5, r"map_location: device must be a string or a torch.device, got int"),
])
def test_a_bad_map_location_is_the_arguments_fault_not_the_files(tmp_path, where, message):
    # the file was reported as "damaged" for a device the machine lacks or a misspelt one
    save_model(build_model("mlp", 3, 2, hidden=(8,), seed=0), tmp_path / "m.pt")
    with pytest.raises(ValueError, match=message):
        load_model(build_model("mlp", 3, 2, hidden=(8,), seed=0), tmp_path / "m.pt", map_location=where)
    load_model(build_model("mlp", 3, 2, hidden=(8,), seed=0), tmp_path / "m.pt", map_location="cpu")
