import pytest

from inference.plan import PlanOptions, Sampling, choose_stride, plan_patches


@pytest.mark.parametrize(
    "spacing,stride",
    [(0.6, 4), (0.81, 4), (0.977, 4), (1.0, 4), (1.2, 2), (1.5, 2), (2.0, 2), (3.0, 1), (5.0, 1), (0.4, 4)],
)
def test_stride_keeps_the_strided_voxel_in_the_trained_range(spacing, stride):
    assert choose_stride((spacing, spacing)) == stride


def test_custom_range_and_anisotropic_spacing():
    assert choose_stride((0.8, 1.2), seen_mm=(1.5, 2.5)) == 2  # mean 1.0 mm: 2.0 mm at stride 2
    assert choose_stride((3.0, 3.0), seen_mm=(0.5, 1.0)) == 1  # nothing fits: the closest


def test_plan_for_spacing_caps_phases():
    plan = plan_patches(PlanOptions(phases=16), Sampling(), (3.0, 3.0), 16)
    assert (plan.stride, plan.phases) == (1, 1)
    plan = plan_patches(PlanOptions(phases=16), Sampling(), (1.5, 1.5), 16)
    assert (plan.stride, plan.phases, plan.grid_step) == (2, 4, 1)
    plan = plan_patches(PlanOptions(phases=1), Sampling(), (1.5, 1.5), 16)
    assert (plan.stride, plan.phases, plan.grid_step) == (2, 1, 2)
    assert plan_patches(PlanOptions(phases=4, stride=4), Sampling(), (3.0, 3.0), 16).stride == 4


def test_bad_values():
    with pytest.raises(ValueError):
        choose_stride((0.0, 1.0))
    with pytest.raises(ValueError):
        choose_stride((1.0, 1.0), seen_mm=(2.0, 1.0))
