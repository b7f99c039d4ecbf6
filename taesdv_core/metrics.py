"""Quality metrics of decoded clips against a reference decode: PSNR, SSIM and a flicker index.

Layout: frames NTCHW or TCHW, RGB in [0, 1], decoded and reference of the same shape (any
strides: views into a larger tensor are read in place). All metrics average over the N clips
and T frames; results are Python floats.

Memory: every metric reads one band of rows of one frame at a time and sums in float64, so it
holds a few MiB whatever the clip's length and frame size: whole-clip float64 SSIM needed about
90 times the clip, and a whole frame's float64 sum about 3 frames (9 MiB at 512x512).
"""
from __future__ import annotations

import math

import torch

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03  # C1 = (K1 L)^2, C2 = (K2 L)^2 with L = 1 (data range)
# Bands of rows are at most this many values (SSIM: map positions of one channel; PSNR and the
# flicker index: values of all channels) and at most 1/BAND_SHARE of a frame's rows. SSIM's work
# buffers hold 10 float64 planes of a band and its window's margin: 2.6 MiB at 512x512, about a
# float32 frame's size or less at any size from 128 px up, so that they add no more than a frame
# to what a comparison holds; PSNR's and the flicker index's buffer is at most 0.5 MiB.
SSIM_BAND_VALUES = 2 ** 15
BAND_VALUES = 2 ** 16
BAND_SHARE = 8


def _band_rows(rows: int, values_per_row: int, most_values: int) -> int:
    """Rows per band: at most `most_values` values and 1/BAND_SHARE of `rows`, at least 1."""
    return max(1, min(most_values // values_per_row, rows // BAND_SHARE))


def _ntchw(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.ndim == 4:
        x = x.unsqueeze(0)
    if x.ndim != 5:
        raise ValueError(f"{name} must be NTCHW or TCHW, got shape {tuple(x.shape)}")
    return x.detach()


def _pair(decoded, reference):
    a, b = _ntchw(decoded, "decoded"), _ntchw(reference, "reference")
    if a.shape != b.shape:
        raise ValueError(f"decoded {tuple(a.shape)} and reference {tuple(b.shape)} differ in shape")
    return a, b


def _frames(*clips: torch.Tensor):
    """The frames (C, H, W) of the clips side by side, one (n, t) at a time (views)."""
    n, t = clips[0].shape[:2]
    for i in range(n):
        for j in range(t):
            yield tuple(c[i, j] for c in clips)


def _difference_sums(a: torch.Tensor, b: torch.Tensor, absolute: bool = False) -> list[float]:
    """Per frame of a and b (N, T, C, H, W), in (n, t) order: the sum of (a - b)^2, or of |a - b|
    when `absolute`, in float64. The difference is taken in float32 a band of rows at a time into
    one float64 buffer, reused for every band of every frame."""
    c, h, w = a.shape[2:]
    rows = _band_rows(h, c * w, BAND_VALUES)
    buffer = torch.empty((c, rows, w), dtype=torch.float64, device=a.device)
    sums = []
    for x, y in _frames(a, b):
        total = 0.0
        for r in range(0, h, rows):
            band = buffer[:, :min(rows, h - r)]
            torch.sub(x[:, r:r + rows].float(), y[:, r:r + rows].to(a.device, torch.float32), out=band)
            total += float((band.abs_() if absolute else band.square_()).sum())
        sums.append(total)
    return sums


def psnr_per_frame(decoded: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """(N, T) PSNR of each frame in dB (inf where a frame is identical)."""
    a, b = _pair(decoded, reference)
    mse = torch.tensor(_difference_sums(a, b), dtype=torch.float64) / a[0, 0].numel()
    return (10 * torch.log10(1.0 / mse)).float().reshape(a.shape[:2])


def psnr(decoded: torch.Tensor, reference: torch.Tensor) -> float:
    """10 log10(1 / MSE) in dB, the MSE over every pixel of every frame (data range 1).

    Identical clips give inf.
    """
    a, b = _pair(decoded, reference)
    squared = sum(_difference_sums(a, b))
    mse = squared / a.numel()
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def _gaussian_taps(size: int, sigma: float, device) -> torch.Tensor:
    """The 1-D Gaussian of `size` taps (sum 1), float64; the window is its outer product."""
    r = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g = torch.exp(-(r ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def _blur(z: torch.Tensor, taps: torch.Tensor, dim: int, out: torch.Tensor) -> torch.Tensor:
    """z filtered along `dim` by `taps` at 'valid' positions, written into `out` (as long as the
    valid positions along `dim`): a weighted sum of shifted views, which needs no memory but its
    output (float64 conv2d unfolds its input, ~11x the band)."""
    length = out.shape[dim]
    torch.mul(z.narrow(dim, 0, length), taps[0], out=out)
    for i in range(1, taps.numel()):
        out.add_(z.narrow(dim, i, length), alpha=float(taps[i]))
    return out


def _ssim_map_sum(x: torch.Tensor, y: torch.Tensor, taps: torch.Tensor, planes: torch.Tensor,
                  columns: torch.Tensor) -> float:
    """Sum of the SSIM map of two (h, w) images ('valid' positions of the Gaussian window whose
    1-D taps are `taps`), in float64: the variances are differences of nearly equal terms, which
    float32 gets wrong by ~1e-4 of SSIM. The window is separable: a column pass and a row pass
    (2 x 11 taps, not 121) over the five planes stacked.

    planes (5, >= h, w) and columns (5, >= h - size + 1, w): float64 buffers reused band after
    band, so that no band allocates. They hold the five planes and their column pass; the row
    pass goes back into the planes' buffer (the planes are done with), the terms are formed in
    place there, and the product of the means goes into the column pass's buffer.
    """
    h, w = x.shape
    margin = taps.numel() - 1
    planes, columns = planes[:, :h], columns[:, :h - margin]
    planes[0], planes[1] = x, y
    torch.mul(planes[0], planes[0], out=planes[2])
    torch.mul(planes[1], planes[1], out=planes[3])
    torch.mul(planes[0], planes[1], out=planes[4])
    _blur(planes, taps, 1, out=columns)
    mu_x, mu_y, xx, yy, xy = _blur(columns, taps, 2, out=planes[:, :h - margin, :w - margin])
    mu_xy = torch.mul(mu_x, mu_y, out=columns[0, :, :w - margin])
    mu_xx, mu_yy = mu_x.square_(), mu_y.square_()
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2
    contrast = xx.sub_(mu_xx).add_(yy.sub_(mu_yy)).add_(c2)  # var_x + var_y + C2
    structure = xy.sub_(mu_xy).mul_(2).add_(c2)  # 2 cov + C2
    smap = mu_xy.mul_(2).add_(c1).mul_(structure).div_(mu_xx.add_(mu_yy).add_(c1).mul_(contrast))
    return float(smap.sum())


def ssim_per_frame(decoded: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """(N, T) SSIM of each frame (Wang et al. 2004).

    Per channel: local means, variances and covariance under an 11x11 Gaussian window
    (sigma 1.5, 'valid' positions only), SSIM map = ((2 mu_a mu_b + C1)(2 cov + C2)) /
    ((mu_a^2 + mu_b^2 + C1)(var_a + var_b + C2)), C1 = 0.01^2, C2 = 0.03^2; a frame's SSIM is the
    mean of the map over positions and channels. Frames smaller than 11 pixels use a window
    as large as the smaller side (odd). Computed over bands of rows of one channel, each read with
    the window's margin, so the map is the whole frame's.
    """
    a, b = _pair(decoded, reference)
    n, t, c, h, w = a.shape
    size = min(SSIM_WINDOW, h, w)
    size -= 1 - size % 2
    taps = _gaussian_taps(size, SSIM_SIGMA, a.device)
    rows_out = h - size + 1  # map rows
    band = _band_rows(rows_out, w, SSIM_BAND_VALUES)
    planes = torch.empty((5, band + size - 1, w), dtype=torch.float64, device=a.device)
    columns = torch.empty((5, band, w), dtype=torch.float64, device=a.device)
    sums = [sum(_ssim_map_sum(x[ch, r:r + band + size - 1], y[ch, r:r + band + size - 1].to(a.device), taps,
                              planes, columns)
                for ch in range(c) for r in range(0, rows_out, band))
            for x, y in _frames(a, b)]
    return (torch.tensor(sums, dtype=torch.float64) / (c * rows_out * (w - size + 1))).float().reshape(n, t)


def ssim(decoded: torch.Tensor, reference: torch.Tensor) -> float:
    """SSIM averaged over frames (see ssim_per_frame); identical clips give 1."""
    return float(ssim_per_frame(decoded, reference).double().mean())


def temporal_change(frames: torch.Tensor) -> float:
    """D(x) = mean over t >= 1, channels and pixels of |x_t - x_{t-1}|: how much a clip changes
    from frame to frame (0 for a single frame or a static clip)."""
    x = _ntchw(frames, "frames")
    if x.shape[1] < 2:
        return 0.0
    change = sum(_difference_sums(x[:, 1:], x[:, :-1], absolute=True))
    return change / x[:, 1:].numel()


def flicker_index(decoded: torch.Tensor, reference: torch.Tensor, clip_at_zero: bool = False) -> float:
    """Flicker of a decode against its reference: F = D(decoded) - D(reference), with D the mean
    absolute change between consecutive frames (temporal_change).

    F > 0: the decode changes more from frame to frame than the reference (flicker, in [0, 1]
    intensity units per frame step); F < 0: it changes less (over-smoothed motion); identical or
    static clips give 0. clip_at_zero=True reports max(F, 0), flicker only.

    Known answer: adding i.i.d. Gaussian noise n_t of standard deviation s to every pixel of
    every frame of a static reference raises F by E|n_t - n_{t-1}| = 2s / sqrt(pi)
    (n_t - n_{t-1} ~ N(0, 2 s^2) and E|N(0, v)| = sqrt(2 v / pi)).
    """
    a, b = _pair(decoded, reference)
    f = temporal_change(a) - temporal_change(b)
    return max(f, 0.0) if clip_at_zero else f
