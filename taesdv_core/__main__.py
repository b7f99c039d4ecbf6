"""Command line: decode, encode and round-trip with TAESDV, no ComfyUI needed.

    python -m taesdv_core decode LATENTS -w taesdv.pth -o OUT [--mode parallel|chunked|stream] [--chunk N]
    python -m taesdv_core encode FRAMES -w taesdv.pth -o OUT.safetensors
    python -m taesdv_core roundtrip VIDEO -w taesdv.pth -o OUT
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from .checkpoint import DTYPES, load_taesdv
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m taesdv_core", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("-w", "--weights", required=True, help="taesdv.pth or .safetensors")
        p.add_argument("-o", "--output", required=True)
        p.add_argument("--dtype", choices=["auto", *DTYPES], default="auto", help="auto: fp16 on CUDA, fp32 on CPU")
        p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
        p.add_argument("--chunk", type=int, default=None, help="frames per chunk (default: automatic)")
        p.add_argument("--fps", type=float, default=None, help="frame rate of animated outputs (default 8, or the input's)")

    p = sub.add_parser("decode", help="latents -> frames (.safetensors, PNG folder, .webp, .gif, .mp4)")
    p.add_argument("latents", help=".safetensors with key 'latents' (model space, NTCHW/TCHW) or a ComfyUI .latent")
    p.add_argument("--mode", choices=["parallel", "chunked", "stream"], default="chunked")
    common(p)
    p = sub.add_parser("encode", help="frames (folder of images or a video) -> latents .safetensors")
    p.add_argument("frames")
    common(p)
    p = sub.add_parser("roundtrip", help="video -> latents -> video")
    p.add_argument("video")
    p.add_argument("--max-frames", type=int, default=None)
    common(p)
    args = parser.parse_args(argv)

    try:
        if args.chunk is not None and args.chunk < 1:
            raise InputError(f"--chunk {args.chunk}: give a positive number of frames")
        device = _device(args.device)
        model = load_taesdv(args.weights, dtype=_dtype(args.dtype, device), device=device)
        started = time.perf_counter()
        if args.command == "decode":
            if model.decoder is None:
                raise CheckpointError(f"'{args.weights}' has no decoder tensors")
            latents = read_latents(args.latents)
            check_finite(latents, "latents")
            writer = FrameWriter(args.output, fps=args.fps or 8.0)
            _decode_to(writer, model.decoder, latents, args.mode, args.chunk)
            n, t = latents.shape[:2]
            print(f"decoded {n}x{t} frames of {latents.shape[-2] * 8}x{latents.shape[-1] * 8} in "
                  f"{time.perf_counter() - started:.2f}s -> {args.output}")
        else:
            if model.encoder is None:
                raise CheckpointError(f"'{args.weights}' has no encoder tensors")
            source = args.frames if args.command == "encode" else args.video
            frames, fps = read_frames(source, getattr(args, "max_frames", None))
            frames = crop_to_multiple_of_8(frames)
            latents = encode(model.encoder, frames, args.chunk)
            if args.command == "encode":
                from safetensors.torch import save_file

                if not args.output.endswith(".safetensors"):
                    raise InputError(f"-o '{args.output}': encode writes a .safetensors file (key 'latents')")
                save_file({"latents": latents.unsqueeze(0).contiguous()}, args.output)
                print(f"encoded {frames.shape[0]} frames -> {args.output} (key 'latents', NTCHW, model space)")
            else:
                if model.decoder is None:
                    raise CheckpointError(f"'{args.weights}' has no decoder tensors")
                writer = FrameWriter(args.output, fps=args.fps or fps)
                _decode_to(writer, model.decoder, latents.unsqueeze(0), "chunked", args.chunk)
                print(f"round-tripped {frames.shape[0]} frames in {time.perf_counter() - started:.2f}s -> {args.output}")
    except (CheckpointError, InputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
