"""Command line: decode, encode and round-trip with any tiny autoencoder file, no ComfyUI needed.

    taesdv decode LATENTS -w FILE -o OUT [--mode parallel|chunked|stream] [--chunk N] [--fps F] [--keyframes off|repeat|blend]
    taesdv encode FRAMES -w FILE -o OUT.safetensors
    taesdv roundtrip VIDEO -w FILE -o OUT [--max-frames N] [--fps F]

FILE is recognised by its tensors (taesdv_core/loading.py): TAESDV, TAEHV (Wan, HunyuanVideo,
LTX-2, ...), image TAESD, TAE-192 or the temporal decoder. `taesdv` is the console command
`pip install -e .` (in the pack's folder) installs; `python -m taesdv_core` is the same program.
Structure: build_parser() declares every subcommand and option; each subcommand is one function
(decode_command, ...) taking the parsed arguments.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time

import torch

from . import compare
from .checkpoint import DTYPES, OFFICIAL_URL
from .compare import format_bytes, memory_available
from .engine import DecodeStream, check_finite, decode, encode
from .errors import CheckpointError, InputError
from .families import where_to_get
from .keyframes import check_keyframe_decoder, expand_keyframes, expanded_length
from .loading import comfy_latent_to_input, load_autoencoder, raw_latents_to_input
from .media import FrameWriter, crop_to_encoder, output_kind, read_frames, read_latents
from .precision import auto_dtype

KEYFRAMES = ("off", "repeat", "blend")


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


def _dtype(name: str, device: torch.device) -> torch.dtype | str:
    if name == "auto":
        return auto_dtype(device)
    return name  # a DTYPES name: "tf32" loads fp32 weights that may use TF32


def check_writable(path: str, flag: str = "-o", folder: bool | None = None) -> None:
    """Refuse, before any work, an output that cannot be written: a file output that names a
    folder, a place under a regular file, one that takes no files (/proc). `folder`: whether the
    output is a folder (None: by its name, as FrameWriter decides)."""
    if folder is None:
        folder = output_kind(path) == "folder"
    try:
        if folder:
            os.makedirs(path, exist_ok=True)
            with tempfile.TemporaryFile(dir=path):
                return
        if os.path.isdir(path):
            raise InputError(f"{flag} '{path}' is a folder; name a file (with its extension) inside it, or give a "
                             "name without an extension for a folder of PNG frames")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        existed = os.path.exists(path)
        with open(path, "ab"):  # opened as the writer will open it, changing nothing
            pass
        if not existed:
            os.remove(path)
    except OSError as e:
        raise InputError(f"{flag} '{path}': cannot write there ({e.strerror or e})") from None


def _check_output_fits(latents: torch.Tensor, decoder, frames: int, mode: str, output: str) -> None:
    """Refuse a decode whose frames cannot fit in the memory available, before decoding: only
    --mode stream into a folder writes frames as they come instead of holding them all."""
    if mode == "stream" and output_kind(output) == "folder":
        return
    n, _, _, h, w = latents.shape
    hh, ww = h * decoder.spatial_scale, w * decoder.spatial_scale
    need, free = 4 * n * frames * 3 * hh * ww, memory_available()
    if free is not None and need > free:
        count = f"{frames}" if n == 1 else f"{n}x{frames}"
        raise InputError(f"latents {tuple(latents.shape)} decode to {count} frames of {ww}x{hh} that need "
                         f"{format_bytes(need)}, but {format_bytes(free)} of memory is available; decode with "
                         "--mode stream into a folder (frames written as they come), or fewer frames at a time")


def _decode_to(writer: FrameWriter, decoder, latents: torch.Tensor, mode: str, chunk: int | None,
               keyframes: str = "off") -> None:
    t = latents.shape[1]
    if mode == "stream":  # hand the engine one piece at a time, writing frames as they come
        stream = DecodeStream(decoder)
        piece = chunk or 1
        for start in range(0, t, piece):
            writer.write(stream.decode(latents[:, start:start + piece], chunk_frames=piece))
    else:
        frames = decode(decoder, latents, chunk_frames=t if mode == "parallel" else chunk)
        writer.write(frames if keyframes == "off" else expand_keyframes(frames, keyframes))
    writer.close()


def weights_missing(path: str) -> str:
    """What to do when -w names no file: where that family's files come from."""
    name = os.path.basename(path)
    if where_to_get(name) == OFFICIAL_URL:
        return (f"-w/--weights: file not found; download {OFFICIAL_URL} (5.6 MB), or run "
                "`python scripts/fetch_weights.py DIR` in the ComfyUI-TAESDV repository, and pass its path")
    return f"-w/--weights: file not found; the official {name} comes from {where_to_get(name)}: pass its path"


def _load(args, *parts: str):
    """The file's model, refused unless it holds every one of `parts` ("encoder", "decoder")."""
    device = _device(args.device)
    model = load_autoencoder(args.weights, _dtype(args.dtype, device), device, missing_advice=weights_missing(args.weights))
    missing = [part for part in parts if getattr(model, part) is None]
    if missing:
        what = getattr(model, "description", type(model).__name__)
        full = getattr(model, "full_file", "a file that holds both halves")
        raise CheckpointError(f"-w '{args.weights}' ({what}) has no {' and no '.join(missing)}; "
                              f"`{args.command}` needs the {' and the '.join(parts)}: use {full}")
    return model


def _check_keyframes(args, decoder) -> None:
    if args.keyframes == "off":
        return
    check_keyframe_decoder(decoder, "--keyframes", args.keyframes)
    if args.mode == "stream":
        raise InputError(f"--keyframes {args.keyframes} fills frames between keyframes of the whole clip; "
                         "use --mode chunked or parallel")


def decode_command(args) -> None:
    decoder = _load(args, "decoder").decoder
    _check_keyframes(args, decoder)
    started = time.perf_counter()
    check_writable(args.output)
    latents = read_latents(args.latents, lambda x: comfy_latent_to_input(decoder, x))
    latents = raw_latents_to_input(decoder, latents)  # a Save Latent file's are unfolded already
    check_finite(latents, "latents")
    n, t, _, h, w = latents.shape
    frames = DecodeStream(decoder).output_frames(t) if args.keyframes == "off" else expanded_length(t)
    _check_output_fits(latents, decoder, frames, args.mode, args.output)
    writer = FrameWriter(args.output, fps=args.fps)
    _decode_to(writer, decoder, latents, args.mode, args.chunk, args.keyframes)
    scale = decoder.spatial_scale
    print(f"decoded {n}x{frames} frames of {w * scale}x{h * scale} ({decoder.family}) in "
          f"{time.perf_counter() - started:.2f}s -> {args.output}")


def _encode_frames(encoder, frames: torch.Tensor, chunk: int | None) -> torch.Tensor:
    """Frames (T, 3, H, W) -> latents (1, T', C, h, w), centre-cropped to the encoder's scale first."""
    return encode(encoder, crop_to_encoder(frames, encoder), chunk).unsqueeze(0)


def encode_command(args) -> None:
    from safetensors.torch import save_file

    if not args.output.endswith(".safetensors"):
        raise InputError(f"-o '{args.output}': encode writes a .safetensors file (key 'latents')")
    check_writable(args.output)
    encoder = _load(args, "encoder").encoder
    frames, _ = read_frames(args.frames)
    latents = _encode_frames(encoder, frames, args.chunk)
    save_file({"latents": latents.contiguous()}, args.output)
    print(f"encoded {frames.shape[0]} frames -> {args.output} (key 'latents', NTCHW {tuple(latents.shape)}, "
          "the decoder's input space)")


def roundtrip_command(args) -> None:
    check_writable(args.output)
    model = _load(args, "encoder", "decoder")
    started = time.perf_counter()
    frames, fps = read_frames(args.video, args.max_frames)
    latents = _encode_frames(model.encoder, frames, args.chunk)
    writer = FrameWriter(args.output, fps=args.fps or fps)
    _decode_to(writer, model.decoder, latents, "chunked", args.chunk)
    print(f"round-tripped {frames.shape[0]} frames -> {writer.count} frames ({model.decoder.family}) in "
          f"{time.perf_counter() - started:.2f}s -> {args.output}")


def compare_command(args) -> None:
    args.device = _device(args.device)
    check_writable(args.out, "--out", folder=True)
    compare.run_cli(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="taesdv", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="{decode,encode,roundtrip,compare}")

    def common(p):
        p.add_argument("-w", "--weights", required=True, metavar="FILE",
                       help="a tiny autoencoder file (.pth or .safetensors), recognised by its tensors: TAESDV "
                            f"({OFFICIAL_URL}), TAEHV (taew2_1, taehv, ...), image TAESD (taesd_decoder, ...), TAE-192")
        p.add_argument("--dtype", choices=["auto", *DTYPES], default="auto",
                       help="weights and compute precision (default auto: fp16 on CUDA, bf16 on CPUs with native bf16 (AMX or "
                            "AVX512-BF16), fp32 otherwise; fp32 is exact, tf32 lets CUDA convs use TF32); frames are float32 either way")
        p.add_argument("--device", default="auto", help="auto (CUDA if available, else CPU), cpu, cuda, cuda:N or mps")
        p.add_argument("--chunk", type=int, default=None, metavar="N",
                       help="frames per chunk; never changes the frames, only speed and memory (default: automatic)")

    p = sub.add_parser("decode", help="latents -> frames (.safetensors, folder of PNGs, .webp, .gif, .mp4)",
                       description="Decode latents to frames with any tiny decoder file. TAESDV and image TAESD give one "
                                   "frame per latent frame; TAEHV gives 4T-3 (LTX-2: 8T-7) frames for T latent frames.")
    p.add_argument("latents", metavar="LATENTS",
                   help=".safetensors with key 'latents' (NTCHW or TCHW) in the decoder's input space: the diffusion "
                        "model's latents (TAESDV/TAESD: VAE latent x its scale, e.g. 0.18215; TAEHV: raw, no scaling; "
                        "taef2: 32 channels at 1/8 size, as encode writes them, or FLUX.2's 128 at 1/16, unfolded "
                        "here), or a ComfyUI .latent (Save Latent), mapped as ComfyUI's VAE Decode maps it for this file")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="by extension: .safetensors (key 'frames'), .webp, .gif, .mp4, or a folder (PNG per frame)")
    p.add_argument("--mode", choices=["parallel", "chunked", "stream"], default="chunked",
                   help="parallel: whole clip in one pass; chunked: --chunk frames at a time (default); "
                        "stream: piece by piece in constant memory, folder frames written as they come")
    p.add_argument("--fps", type=float, default=8.0, help="frame rate of .webp/.gif/.mp4 output (default 8)")
    p.add_argument("--keyframes", choices=KEYFRAMES, default="off",
                   help="CV-VAE latents (SD latent space, 4x time): each latent frame is the keyframe of 4 frames. "
                        "off: one frame per latent frame (the keyframes); repeat: each keyframe held for its 4 frames; "
                        "blend: cross-fades between keyframes. repeat/blend give 1 + 4(T-1) frames that are not "
                        "decoded motion. For one-frame-per-latent decoders (TAESDV, image TAESD), not with --mode stream")
    common(p)
    p.set_defaults(run=decode_command)

    p = sub.add_parser("encode", help="frames (folder of images, animated webp/gif, or a video) -> latents .safetensors",
                       description="Encode frames to latents with any tiny encoder file (TAESDV, TAEHV, image TAESD).")
    p.add_argument("frames", metavar="FRAMES",
                   help="a folder of images, an animated .webp/.gif, or a video (PyAV); centre-cropped to multiples of the "
                        "encoder's scale (8; 16 for taef2, whose latents fold into FLUX.2's; 16 or 32 for patched TAEHV "
                        "files); TAEHV pads the frame count at the end to a multiple of 4 (LTX-2: 8)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.safetensors",
                   help="latents file (key 'latents', NTCHW) in the decoder's input space, as decode reads it "
                        "(TAESDV: SD VAE latents x 0.18215; TAEHV: raw; taef2: 32 channels at 1/8 size, unfolded)")
    common(p)
    p.set_defaults(run=encode_command)

    p = sub.add_parser("roundtrip", help="video -> latents -> video (see what a tiny autoencoder keeps)",
                       description="Encode a video and decode it again.")
    p.add_argument("video", metavar="VIDEO", help="a video (PyAV), an animated .webp/.gif, or a folder of images")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="by extension: .safetensors, .webp, .gif, .mp4, or a folder (PNG per frame)")
    p.add_argument("--max-frames", type=int, default=None, metavar="N", help="use only the first N frames (default: all)")
    p.add_argument("--fps", type=float, default=None, help="frame rate of the output (default: the input's)")
    common(p)
    p.set_defaults(run=roundtrip_command)

    compare.add_cli(sub)
    sub.choices["compare"].set_defaults(run=compare_command)
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
