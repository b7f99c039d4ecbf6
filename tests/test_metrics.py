"""PSNR, SSIM and the flicker index on synthetic clips whose answers are known."""
import math

import pytest
import torch

from taesdv_core.metrics import flicker_index, psnr, psnr_per_frame, ssim, ssim_per_frame, temporal_change


def clip(t=6, h=24, w=20, seed=0):
    return torch.rand(1, t, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_identical_clips_give_infinite_psnr_ssim_one_and_no_flicker():
    x = clip()
    assert psnr(x, x) == math.inf
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    assert flicker_index(x, x) == 0.0


def test_psnr_of_a_constant_offset():
    x = torch.full((2, 3, 3, 8, 8), 0.5)
    assert psnr(x + 0.1, x) == pytest.approx(20.0, abs=1e-4)  # MSE 0.01 (fp32 inputs)
    assert psnr(x + 0.01, x) == pytest.approx(40.0, abs=1e-3)
    per_frame = psnr_per_frame(torch.cat([x[:, :1] + 0.1, x[:, 1:]], 1), x)
    assert per_frame[0, 0].item() == pytest.approx(20.0, abs=1e-4) and torch.isinf(per_frame[0, 1:]).all()


def test_ssim_of_a_constant_offset_is_the_luminance_term():
    # Flat images: variances and covariance vanish, so SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    a, b, c1 = 0.6, 0.5, 0.01 ** 2
    x, y = torch.full((1, 2, 3, 16, 16), a), torch.full((1, 2, 3, 16, 16), b)
    assert ssim(x, y) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-6)


def test_ssim_falls_with_noise_and_is_per_frame():
    x = clip(h=32, w=32)
    g = torch.Generator().manual_seed(1)
    light, heavy = x + 0.02 * torch.randn(x.shape, generator=g), x + 0.2 * torch.randn(x.shape, generator=g)
    assert 1 > ssim(light, x) > ssim(heavy, x) > 0
    mixed = torch.cat([x[:, :3], heavy[:, 3:]], 1)
    frames = ssim_per_frame(mixed, x)[0]
    assert torch.allclose(frames[:3], torch.ones(3)) and (frames[3:] < 0.9).all()


def test_static_clip_has_zero_temporal_change_and_flicker():
    static = clip(t=1).expand(1, 8, 3, 24, 20)
    assert temporal_change(static) == 0.0
    assert flicker_index(static, static) == 0.0


def test_iid_noise_raises_flicker_by_2s_over_sqrt_pi():
    s = 0.02
    reference = torch.full((4, 16, 3, 32, 32), 0.5)
    noisy = reference + s * torch.randn(reference.shape, generator=torch.Generator().manual_seed(2))
    expected = 2 * s / math.sqrt(math.pi)
    assert flicker_index(noisy, reference) == pytest.approx(expected, rel=0.01)  # ~700k samples


def test_smoother_than_reference_is_negative_unless_clipped():
    ramp = torch.linspace(0, 1, 9).view(1, 9, 1, 1, 1).expand(1, 9, 3, 4, 4)
    still = ramp[:, :1].expand_as(ramp)
    assert temporal_change(ramp) == pytest.approx(1 / 8)
    assert flicker_index(still, ramp) == pytest.approx(-1 / 8)
    assert flicker_index(still, ramp, clip_at_zero=True) == 0.0
    assert flicker_index(ramp, ramp) == 0.0  # motion the reference has is not flicker


def test_shapes_must_match():
    with pytest.raises(ValueError, match="differ"):
        psnr(clip(t=3), clip(t=4))
