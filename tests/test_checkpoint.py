import pytest
import torch

from inference.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, write_sha256sums
from inference.model import RUNet, UNetConfig
from inference.preprocess import Normalization


def _save(folder, name="m.pt"):
    torch.manual_seed(1)
    model = RUNet(UNetConfig(widths=(2, 4), norm="instance", tv_step=0.5, lam_init=0.25))
    save_checkpoint(folder / name, model, Normalization(-100, 200), training={"epochs": 3, "seed": 1})
    write_sha256sums(folder)
    return model


def test_round_trip(tmp_path):
    model = _save(tmp_path)
    ckpt = load_checkpoint(tmp_path / "m.pt")
    assert ckpt.config == model.config
    assert ckpt.normalization == Normalization(-100, 200)
    assert ckpt.label_names == {0: "background", 1: "liver", 2: "kidney", 3: "spleen", 4: "pancreas"}
    assert ckpt.training == {"epochs": 3, "seed": 1}
    assert not ckpt.model.training
    x = torch.randn(1, 1, 4, 4, 4)
    model.eval()
    assert torch.equal(ckpt.model(x), model(x))
    # plain torch.load with weights_only=True reads it
    assert torch.load(tmp_path / "m.pt", weights_only=True)["format_version"] == 1


def test_checksum_errors(tmp_path):
    _save(tmp_path)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "m.pt").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(tmp_path / "m.pt")
    (tmp_path / "SHA256SUMS").write_text("")
    with pytest.raises(CheckpointError, match="not listed"):
        load_checkpoint(tmp_path / "m.pt")
    (tmp_path / "SHA256SUMS").unlink()
    with pytest.raises(CheckpointError, match="no SHA256SUMS"):
        load_checkpoint(tmp_path / "m.pt")


def test_not_a_checkpoint(tmp_path):
    torch.save({"hello": 1}, tmp_path / "x.pt")
    write_sha256sums(tmp_path)
    with pytest.raises(CheckpointError, match="not a RUnet checkpoint"):
        load_checkpoint(tmp_path / "x.pt")


@pytest.mark.parametrize("old_lam", [0.0, -2.0, 0.6])
def test_checkpoint_that_stored_lambda_itself_loads_with_the_same_probabilities(tmp_path, old_lam):
    """The shipped file's network, saved as checkpoints once stored it (`activation.lam`, used as max(lam, 0))."""
    from inference.checkpoint import DEFAULT_WEIGHTS
    from inference.regularized_softmax import regularized_softmax

    payload = torch.load(DEFAULT_WEIGHTS, map_location="cpu", weights_only=True)
    state = {k: v for k, v in payload["state_dict"].items() if not k.startswith("activation.")}
    payload["state_dict"] = state | {"activation.lam": torch.tensor(old_lam)}
    for key in ("lam_learnable", "tv_iterations"):  # configs of that format did not have these fields
        payload["config"].pop(key, None)
    torch.save(payload, tmp_path / "old.pt")
    ckpt = load_checkpoint(tmp_path / "old.pt", verify=False)
    assert ckpt.model.activation.lam_value == pytest.approx(max(old_lam, 1e-12), rel=1e-5)
    x = torch.randn(1, 1, 16, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = regularized_softmax(ckpt.model.logits(x), max(old_lam, 0.0), ckpt.config.tv_step)
        assert torch.allclose(ckpt.model(x), expected, atol=1e-6)
