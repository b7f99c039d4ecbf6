"""Reading latents and frames from files, and writing frames, for the command line.

Frames are NTCHW float in [0, 1]; latents NTCHW in the decoder's input space (for TAESDV and
image TAESD the diffusion model's latents, e.g. SD VAE latent x 0.18215; for TAEHV the raw
latents the video model produces).
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np
import torch

from .errors import InputError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif", ".webp")


def read_latents(path: str, comfy_to_input: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """NTCHW latents from a `.safetensors` file (key `latents`, NTCHW or TCHW, already in the
    decoder's input space) or a ComfyUI `.latent` file written by Save Latent (the VAE's latents,
    frames as the batch or [B, C, T, h, w]), mapped by `comfy_to_input`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not os.path.isfile(path):
        raise InputError(f"LATENTS '{path}' does not exist")
    try:
        data = load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        hint = "; frames go through 'encode' first" if path.lower().endswith(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS) else ""
        raise InputError(f"LATENTS '{path}' is not a readable safetensors/.latent file ({e}){hint}") from None
    if "latent_tensor" in data:  # ComfyUI Save Latent; files without the version key predate unscaled storage
        x = data["latent_tensor"].float()
        x = comfy_to_input(x) if "latent_format_version_0" in data else x
        x = x.unsqueeze(0) if x.ndim == 4 else x.movedim(1, 2) if x.ndim == 5 else x
    elif "latents" in data:
        x = data["latents"].float()
    else:
        raise InputError(f"LATENTS '{path}' has no 'latents' or 'latent_tensor' key (found: {', '.join(sorted(data)) or 'none'})")
    if x.ndim == 4:
        x = x.unsqueeze(0)
    if x.ndim != 5:
        raise InputError(f"LATENTS '{path}' holds a tensor of shape {tuple(x.shape)}; expected NTCHW or TCHW")
    return x


def _to_uint8_frames(frames: torch.Tensor) -> np.ndarray:
    """NTCHW [0, 1] -> (N*T, H, W, 3) uint8."""
    return (frames.flatten(0, 1).clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())


def output_kind(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext in (".safetensors", ".webp", ".gif", ".mp4"):
        return ext[1:]
    if ext == "" or os.path.isdir(path) or path.endswith(os.sep):
        return "folder"
    raise InputError(f"OUT '{path}': unknown output type '{ext}'; use .safetensors, .webp, .gif, .mp4 or a folder")


class FrameWriter:
    """Writes frames as they come (streaming-friendly for folders), the rest on close()."""

    def __init__(self, path: str, fps: float = 8.0):
        self.path, self.fps, self.kind = path, fps, output_kind(path)
        self.count = 0  # frames per clip written so far
        self._pending: list[torch.Tensor] = []
        if self.kind == "mp4":
            try:
                import av  # noqa: F401
            except ImportError:
                raise InputError("writing .mp4 needs PyAV (pip install av); or write .webp, .gif or a folder") from None
        if self.kind == "folder":
            os.makedirs(path, exist_ok=True)
        elif os.path.dirname(os.path.abspath(path)):
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def write(self, frames: torch.Tensor) -> None:
        """frames: NTCHW [0, 1]."""
        if self.kind == "folder":
            from PIL import Image

            n, t = frames.shape[:2]
            for i, array in enumerate(_to_uint8_frames(frames)):
                clip, frame = divmod(i, t)
                name = f"frame_{self.count + frame:05d}.png" if n == 1 else f"clip{clip}_frame_{self.count + frame:05d}.png"
                Image.fromarray(array).save(os.path.join(self.path, name))
        else:
            self._pending.append(frames.cpu())
        self.count += frames.shape[1]

    def close(self) -> None:
        if self.kind == "folder" or not self._pending:
            return
        frames = torch.cat(self._pending, 1)
        self._pending = []
        if self.kind == "safetensors":
            from safetensors.torch import save_file

            save_file({"frames": frames.clamp(0, 1).float().contiguous()}, self.path)
            return
        arrays = _to_uint8_frames(frames[:1])
        if self.kind in ("webp", "gif"):
            save_animation(arrays, self.fps, self.kind, self.path)
        else:
            import av

            with av.open(self.path, "w") as container:
                stream = container.add_stream("libx264", rate=int(round(self.fps)))
                stream.width, stream.height, stream.pix_fmt = arrays.shape[2] // 2 * 2, arrays.shape[1] // 2 * 2, "yuv420p"
                for a in arrays:
                    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(a[:stream.height, :stream.width]), format="rgb24")
                    container.mux(stream.encode(frame))
                container.mux(stream.encode())


def read_frames(path: str, max_frames: int | None = None) -> tuple[torch.Tensor, float]:
    """(frames (T, 3, H, W) in [0, 1], fps) from a folder of images, an animated webp/gif, or a video (PyAV)."""
    from PIL import Image, ImageSequence

    arrays: list[np.ndarray] = []
    fps = 8.0
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if n.lower().endswith(IMAGE_EXTENSIONS))
        if not names:
            raise InputError(f"FRAMES folder '{path}' has no images ({', '.join(IMAGE_EXTENSIONS)})")
        for n in names[:max_frames]:
            try:
                arrays.append(np.asarray(Image.open(os.path.join(path, n)).convert("RGB")))
            except (OSError, SyntaxError) as e:  # PIL raises either for a corrupt or truncated image
                raise InputError(f"FRAMES '{os.path.join(path, n)}' is not a readable image ({e})") from None
    elif not os.path.isfile(path):
        raise InputError(f"FRAMES '{path}' does not exist")
    elif path.lower().endswith((".gif", ".webp", ".png", ".jpg", ".jpeg")):
        try:
            with Image.open(path) as im:
                duration = im.info.get("duration") or 125
                fps = 1000.0 / duration
                for frame in ImageSequence.Iterator(im):
                    arrays.append(np.asarray(frame.convert("RGB")))
                    if max_frames and len(arrays) >= max_frames:
                        break
        except OSError as e:
            raise InputError(f"FRAMES '{path}' is not a readable image ({e})") from None
    else:
        try:
            import av
        except ImportError:
            raise InputError(f"reading '{path}' needs PyAV (pip install av); or give a folder of images") from None
        try:
            with av.open(path) as container:
                stream = container.streams.video[0]
                fps = float(stream.average_rate or 8)
                for frame in container.decode(stream):
                    arrays.append(frame.to_ndarray(format="rgb24"))
                    if max_frames and len(arrays) >= max_frames:
                        break
        except (av.error.FFmpegError, IndexError) as e:
            raise InputError(f"FRAMES '{path}' is not a readable video ({e})") from None
    if not arrays:
        raise InputError(f"FRAMES '{path}' has no frames")
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise InputError(f"FRAMES '{path}': images differ in size ({sorted(shapes)[:3]}); all frames must match")
    frames = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255
    return frames, fps


def crop_to_encoder(frames: torch.Tensor, encoder, name: str = "frames") -> torch.Tensor:
    """Centre-crop (..., H, W) to multiples of the encoder's spatial scale (8, as ComfyUI's VAE
    Encode crops; 16 or 32 for patched TAEHV encoders) times its LATENT's fold (taef2: 16, so its
    latents fold 2x2 into FLUX.2's), the sizes it takes."""
    multiple = encoder.spatial_scale * encoder.latent_space.fold
    height, width = frames.shape[-2], frames.shape[-1]
    h, w = height // multiple * multiple, width // multiple * multiple
    if h == 0 or w == 0:
        raise InputError(f"{name} are {width}x{height} (width x height); {encoder.family} needs at least "
                         f"{multiple}x{multiple}")
    top, left = (height - h) // 2, (width - w) // 2
    return frames[..., top:top + h, left:left + w]


def save_animation(arrays: np.ndarray, fps: float, kind: str, target) -> None:
    """Frames (T, H, W, 3) uint8 as a looping animated "webp" or "gif" to a path or a binary file."""
    from PIL import Image

    images = [Image.fromarray(a) for a in arrays]
    duration = max(1, int(round(1000 / fps)))
    extra = {"lossless": False, "quality": 90} if kind == "webp" else {}
    images[0].save(target, format=kind.upper(), save_all=True, append_images=images[1:], duration=duration,
                   loop=0, **extra)
