"""The README's real-weights figure: a real clip round-tripped through the pack with the official
FLUX.2 tiny autoencoder (docs/real_roundtrip.webp), and its PSNR.

    .venv/bin/python scripts/make_real_roundtrip_figure.py                  # ../shared/weights, ../shared/media
    .venv/bin/python scripts/make_real_roundtrip_figure.py --weights DIR --clip VIDEO -o OUT.webp

DIR holds taef2_encoder.pth and taef2_decoder.pth (madebyollin/taesd); VIDEO is any clip the CLI
reads (default: the TAESDV test clip, 30 real frames of 256x256). The clip goes through the same
loader, reader and engine as `taesdv encode` / `taesdv decode` (fp32, CPU). The figure shows a few
frames at full size, the originals above and the round trip below, and prints the PSNR over the
whole clip (one mean squared error) and its per-frame range.
"""
import argparse
import math
import os
import sys

import torch
from PIL import Image, ImageDraw

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from taesdv_core import decode, encode  # noqa: E402
from taesdv_core.loading import load_autoencoder  # noqa: E402
from taesdv_core.media import centre_crop, read_frames  # noqa: E402

SHARED = os.path.join(os.path.dirname(ROOT), "shared")
SHOWN_FRAMES = 3
LABEL_HEIGHT = 16


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1 / ((a - b) ** 2).mean().item())


def to_image(frame: torch.Tensor) -> Image.Image:
    return Image.fromarray(frame.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy())


def figure(originals: torch.Tensor, round_trip: torch.Tensor, caption: str) -> Image.Image:
    """Evenly spaced frames side by side: the originals above, the round trip below, each row labelled."""
    t, _, h, w = originals.shape
    picks = [round(i * (t - 1) / (SHOWN_FRAMES - 1)) for i in range(SHOWN_FRAMES)]
    sheet = Image.new("RGB", (w * SHOWN_FRAMES, 2 * (h + LABEL_HEIGHT)), "white")
    draw = ImageDraw.Draw(sheet)
    for row, (frames, label) in enumerate(((originals, "original frames " + ", ".join(map(str, picks))),
                                           (round_trip, caption))):
        top = row * (h + LABEL_HEIGHT)
        draw.text((4, top + 2), label, fill="black")
        for col, i in enumerate(picks):
            sheet.paste(to_image(frames[i]), (col * w, top + LABEL_HEIGHT))
    return sheet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default=os.path.join(SHARED, "weights"),
                        help="folder with taef2_encoder.pth and taef2_decoder.pth (default ../shared/weights)")
    parser.add_argument("--clip", default=os.path.join(SHARED, "media", "taesdv_test_video.gif"),
                        help="the clip to round-trip (default: the TAESDV test clip in ../shared/media)")
    parser.add_argument("-o", "--output", default=os.path.join(ROOT, "docs", "real_roundtrip.webp"))
    args = parser.parse_args()

    encoder = load_autoencoder(os.path.join(args.weights, "taef2_encoder.pth")).encoder
    decoder = load_autoencoder(os.path.join(args.weights, "taef2_decoder.pth")).decoder
    frames, _ = read_frames(args.clip)
    frames = centre_crop(frames, encoder.spatial_scale)
    round_trip = decode(decoder, encode(encoder, frames[None]))[0]

    clip_psnr = psnr(round_trip, frames)
    per_frame = [psnr(round_trip[i], frames[i]) for i in range(len(frames))]
    caption = f"TAEF2 round trip through the pack: {clip_psnr:.2f} dB PSNR"
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    figure(frames, round_trip, caption).save(args.output, quality=75)  # about 120 KB
    print(f"{len(frames)} frames of {frames.shape[-1]}x{frames.shape[-2]} ({args.clip}): PSNR {clip_psnr:.2f} dB "
          f"over the clip, per frame {min(per_frame):.2f} to {max(per_frame):.2f} dB -> {args.output} "
          f"({os.path.getsize(args.output) // 1024} KB)")


if __name__ == "__main__":
    main()
