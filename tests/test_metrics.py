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


def test_metrics_of_a_strided_view_equal_those_of_the_contiguous_clip():
    # Compare measures panels in place: NTCHW views of a side-by-side laid out (N, T, H, W * panels, 3)
    board = torch.rand(1, 5, 24, 40, 3, generator=torch.Generator().manual_seed(4))
    a, b = board[..., :20, :].permute(0, 1, 4, 2, 3), board[..., 20:, :].permute(0, 1, 4, 2, 3)
    ac, bc = a.contiguous(), b.contiguous()
    assert psnr(a, b) == pytest.approx(psnr(ac, bc), rel=1e-9)
    assert ssim(a, b) == pytest.approx(ssim(ac, bc), rel=1e-9)
    assert flicker_index(a, b) == pytest.approx(flicker_index(ac, bc), rel=1e-9)


def test_ssim_of_a_frame_taller_than_a_band_equals_the_whole_frame_computation():
    import torch.nn.functional as F

    x, y = clip(t=2, h=300, w=200, seed=5), clip(t=2, h=300, w=200, seed=6)  # several bands of rows
    a, b = x[0].double(), y[0].double()
    r = torch.arange(11, dtype=torch.float64) - 5
    win = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5 ** 2))
    win = (win / win.sum()).expand(3, 1, 11, 11)  # the 11x11 Gaussian window, sigma 1.5
    mu_a, mu_b = F.conv2d(a, win, groups=3), F.conv2d(b, win, groups=3)
    var_a, var_b = F.conv2d(a * a, win, groups=3) - mu_a ** 2, F.conv2d(b * b, win, groups=3) - mu_b ** 2
    cov = F.conv2d(a * b, win, groups=3) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    smap = (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    assert torch.allclose(ssim_per_frame(x, y)[0].double(), smap.mean(dim=(1, 2, 3)), atol=1e-5)


def test_metrics_hold_a_few_frames_at_a_time_not_the_clip():
    # In a fresh process (peak RSS over a baseline taken with both clips in memory): whole-clip float64
    # SSIM held ~30 clips' worth (a 24-frame 512 px comparison peaked at gigabytes).
    import json
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = f"""
import json, sys, torch
sys.path[:0] = [{root!r}, {os.path.join(root, "bench")!r}]
from process_memory import peak_rss_bytes, reset_peak_rss
from taesdv_core import metrics
g = torch.Generator().manual_seed(0)
x = torch.rand(1, 24, 3, 256, 256, generator=g)
y = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)
metrics.ssim(x[:, :2], y[:, :2])  # lazy inits
baseline = reset_peak_rss()
values = [metrics.psnr(x, y), metrics.ssim(x, y), metrics.flicker_index(x, y)]
print(json.dumps({{"clip_bytes": x.numel() * 4, "growth": peak_rss_bytes() - baseline, "values": values}}))
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    m = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"metrics: clip {m['clip_bytes'] / 2**20:.1f} MiB, peak growth {m['growth'] / 2**20:.1f} MiB")
    assert m["growth"] <= 0.25 * m["clip_bytes"]
    assert 25 < m["values"][0] < 40 and 0 < m["values"][1] < 1 and m["values"][2] != 0
