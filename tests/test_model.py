import pytest
import torch

from inference.model import RUNet, UNetConfig, count_flops, count_parameters


def test_forward_shapes_and_probabilities():
    model = RUNet(UNetConfig(widths=(2, 4, 8))).eval()
    x = torch.randn(2, 1, 8, 12, 16)
    with torch.no_grad():
        probs = model(x)
    assert probs.shape == (2, 5, 8, 12, 16)
    assert torch.allclose(probs.sum(1), torch.ones(2, 8, 12, 16), atol=1e-5)


@pytest.mark.parametrize("attention", [True, False])
@pytest.mark.parametrize("regularized", [True, False])
def test_config_switches(attention, regularized):
    cfg = UNetConfig(widths=(2, 4), attention=attention, regularized_softmax=regularized)
    model = RUNet(cfg)
    has_gate = any("gate" in n for n, _ in model.named_parameters())
    assert has_gate == attention
    assert ("activation.lam_raw" in dict(model.named_parameters())) == regularized


def test_config_round_trip_and_validation():
    cfg = UNetConfig(widths=(3, 6, 12), norm="instance", tv_step=0.5)
    assert UNetConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.size_multiple == 4
    with pytest.raises(ValueError, match="norm"):
        UNetConfig(norm="group")
    with pytest.raises(ValueError, match="widths"):
        UNetConfig(widths=(8,))


def test_input_size_must_fit_the_poolings():
    model = RUNet(UNetConfig(widths=(2, 4, 8)))
    with pytest.raises(ValueError, match="multiples of 4"):
        model(torch.zeros(1, 1, 6, 8, 8))


def test_default_config_size_and_flops():
    model = RUNet(UNetConfig())
    assert count_parameters(model) == 5_668_822  # reported in README.md beside the paper's 8,271,238
    assert count_flops(model) == 241_066_049_536  # at 1x1x128^3; the paper reports 750,361,509,889
