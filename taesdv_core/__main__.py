"""Command line: decode, encode and round-trip with TAESDV, no ComfyUI needed.

    taesdv decode LATENTS -w taesdv.pth -o OUT [--mode parallel|chunked|stream] [--chunk N] [--fps F]
    taesdv encode FRAMES -w taesdv.pth -o OUT.safetensors
    taesdv roundtrip VIDEO -w taesdv.pth -o OUT [--max-frames N] [--fps F]

`taesdv` is the console command `pip install -e .` (in the pack's folder) installs; `python -m
taesdv_core` is the same program. Structure: build_parser() declares every subcommand and option;
each subcommand is one function (decode_command, ...) taking the parsed arguments.
"""
from __future__ import annotations

import argparse
import math
import sys
import time

import torch

from . import compare
from .checkpoint import DTYPES, OFFICIAL_URL, load_taesdv
from .engine import DecodeStream, check_finite, decode, encode
from .errors import CheckpointError, InputError
from .media import FrameWriter, crop_to_multiple_of_8, read_frames, read_latents


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"--device '{name}' is not a torch device (cpu, cuda, cuda:1, mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA is not available here; use --device cpu")
    return device


def _dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return DTYPES[name]


def _decode_to(writer: FrameWriter, decoder, latents: torch.Tensor, mode: str, chunk: int | None) -> None:
    t = latents.shape[1]
    if mode == "parallel":
        writer.write(decode(decoder, latents, chunk_frames=t))
    elif mode == "chunked":
        writer.write(decode(decoder, latents, chunk_frames=chunk))
    else:  # stream: hand the engine one piece at a time, writing frames as they come
        stream = DecodeStream(decoder)
        piece = chunk or 1
        for start in range(0, t, piece):
            writer.write(stream.decode(latents[:, start:start + piece], chunk_frames=piece))
    writer.close()


WEIGHTS_MISSING = (f"-w/--weights: file not found; download {OFFICIAL_URL} (5.6 MB), or run "
                   "`python scripts/fetch_weights.py DIR` in the ComfyUI-TAESDV repository, and pass its path")


def _load(args):
    device = _device(args.device)
    return load_taesdv(args.weights, dtype=_dtype(args.dtype, device), device=device, missing_advice=WEIGHTS_MISSING)


def decode_command(args) -> None:
    model = _load(args)
    if model.decoder is None:
        raise CheckpointError(f"'{args.weights}' has no decoder tensors")
    started = time.perf_counter()
    latents = read_latents(args.latents)
    check_finite(latents, "latents")
    writer = FrameWriter(args.output, fps=args.fps)
    _decode_to(writer, model.decoder, latents, args.mode, args.chunk)
    n, t = latents.shape[:2]
    print(f"decoded {n}x{t} frames of {latents.shape[-2] * 8}x{latents.shape[-1] * 8} in "
          f"{time.perf_counter() - started:.2f}s -> {args.output}")


def encode_command(args) -> None:
    from safetensors.torch import save_file

    if not args.output.endswith(".safetensors"):
        raise InputError(f"-o '{args.output}': encode writes a .safetensors file (key 'latents')")
    model = _load(args)
    if model.encoder is None:
        raise CheckpointError(f"'{args.weights}' has no encoder tensors")
    frames, _ = read_frames(args.frames)
    latents = encode(model.encoder, crop_to_multiple_of_8(frames), args.chunk)
    save_file({"latents": latents.unsqueeze(0).contiguous()}, args.output)
    print(f"encoded {frames.shape[0]} frames -> {args.output} (key 'latents', NTCHW, model space)")


def roundtrip_command(args) -> None:
    model = _load(args)
    if model.encoder is None or model.decoder is None:
        raise CheckpointError(f"'{args.weights}' needs both encoder and decoder tensors for a round trip")
    started = time.perf_counter()
    frames, fps = read_frames(args.video, args.max_frames)
    latents = encode(model.encoder, crop_to_multiple_of_8(frames), args.chunk)
    writer = FrameWriter(args.output, fps=args.fps or fps)
    _decode_to(writer, model.decoder, latents.unsqueeze(0), "chunked", args.chunk)
    print(f"round-tripped {frames.shape[0]} frames in {time.perf_counter() - started:.2f}s -> {args.output}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="taesdv", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="{decode,encode,roundtrip,compare}")

    def common(p):
        p.add_argument("-w", "--weights", required=True, metavar="FILE",
                       help=f"TAESDV checkpoint (taesdv.pth or .safetensors; {OFFICIAL_URL})")
        p.add_argument("--dtype", choices=["auto", *DTYPES], default="auto",
                       help="weights and compute precision (default auto: fp16 on CUDA, fp32 otherwise; fp32 is exact, tf32 lets CUDA convs use TF32)")
        p.add_argument("--device", default="auto", help="auto (CUDA if available, else CPU), cpu, cuda, cuda:N or mps")
        p.add_argument("--chunk", type=int, default=None, metavar="N",
                       help="frames per chunk; never changes the frames, only speed and memory (default: automatic)")

    p = sub.add_parser("decode", help="latents -> frames (.safetensors, folder of PNGs, .webp, .gif, .mp4)",
                       description="Decode SD latents to frames.")
    p.add_argument("latents", metavar="LATENTS",
                   help=".safetensors with key 'latents' (model space, NTCHW or TCHW) or a ComfyUI .latent (Save Latent)")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="by extension: .safetensors (key 'frames'), .webp, .gif, .mp4, or a folder (PNG per frame)")
    p.add_argument("--mode", choices=["parallel", "chunked", "stream"], default="chunked",
                   help="parallel: whole clip in one pass; chunked: --chunk frames at a time (default); "
                        "stream: piece by piece in constant memory, folder frames written as they come")
    p.add_argument("--fps", type=float, default=8.0, help="frame rate of .webp/.gif/.mp4 output (default 8)")
    common(p)
    p.set_defaults(run=decode_command)

    p = sub.add_parser("encode", help="frames (folder of images, animated webp/gif, or a video) -> latents .safetensors",
                       description="Encode frames to SD latents (model space).")
    p.add_argument("frames", metavar="FRAMES",
                   help="a folder of images, an animated .webp/.gif, or a video (PyAV); centre-cropped to multiples of 8")
    p.add_argument("-o", "--output", required=True, metavar="OUT.safetensors",
                   help="latents file (key 'latents', NTCHW, model space: SD VAE latents x 0.18215)")
    common(p)
    p.set_defaults(run=encode_command)

    p = sub.add_parser("roundtrip", help="video -> latents -> video (see what TAESDV keeps)",
                       description="Encode a video and decode it again.")
    p.add_argument("video", metavar="VIDEO", help="a video (PyAV), an animated .webp/.gif, or a folder of images")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="by extension: .safetensors, .webp, .gif, .mp4, or a folder (PNG per frame)")
    p.add_argument("--max-frames", type=int, default=None, metavar="N", help="use only the first N frames (default: all)")
    p.add_argument("--fps", type=float, default=None, help="frame rate of the output (default: the input's)")
    common(p)
    p.set_defaults(run=roundtrip_command)

    compare.add_cli(sub)
    sub.choices["compare"].set_defaults(run=compare.run_cli)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "chunk", None) is not None and args.chunk < 1:
            raise InputError(f"--chunk {args.chunk}: give a positive number of frames")
        fps = getattr(args, "fps", None)
        if fps is not None and not (math.isfinite(fps) and 0 < fps <= 240):
            raise InputError(f"--fps {fps}: give a finite frame rate above 0 and at most 240")
        if getattr(args, "max_frames", None) is not None and args.max_frames < 1:
            raise InputError(f"--max-frames {args.max_frames}: give a positive number of frames")
        args.run(args)
    except (CheckpointError, InputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
