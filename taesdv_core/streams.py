"""A bounded store of named decode streams (for decoding that continues across queue runs).

A stream belongs to its name and to the weights that decode it, not to a loaded model object:
the store is meant to be one per process (ComfyUI: `nodes.stream.STREAM_STORE`), so a stream
continues when the loader runs again, when the model is unloaded or offloaded (the engine moves
the state to the decoder's device and dtype), and when another model object holds the same
weights. It restarts only on `reset`, when different weights come under the same name (the
caller is told why), or when the process restarts.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import replace
from typing import Callable, TypeVar

from .engine import DecodeStream
from .errors import InputError
from .layers import ChunkDecoder

log = logging.getLogger("taesdv")

T = TypeVar("T")


class StreamStore:
    """Named `DecodeStream`s, least recently used evicted past `max_streams` or `max_bytes` of state.

    Each stream remembers the identity of the weights it was decoded with (any hashable, e.g.
    a file fingerprint); `decoder` binds a store made for one decoder only.
    """

    def __init__(self, decoder: ChunkDecoder | None = None, max_streams: int = 16, max_bytes: int = 2 << 30):
        self.decoder = decoder
        self.max_streams = max_streams
        self.max_bytes = max_bytes
        self._streams: OrderedDict[str, DecodeStream] = OrderedDict()
        self._weights: dict[str, object] = {}
        # Names evicted mid-clip: continuing one would silently restart it (a visible seam), so it
        # is refused until reset. Bounded, oldest forgotten first. name -> weights identity
        self._evicted: OrderedDict[str, object] = OrderedDict()

    def __len__(self) -> int:
        return len(self._streams)

    def __contains__(self, name: str) -> bool:
        return name in self._streams

    def state_bytes(self) -> int:
        return sum(s.state_bytes() for s in self._streams.values())

    def open(self, name: str, decoder: ChunkDecoder | None = None, weights: object = None,
             reset: bool = False) -> tuple[DecodeStream, str | None]:
        """The stream called `name` for `decoder` (whose weights are identified by `weights`),
        created empty if new, marked most recently used; with a notice (or None) when the stream
        was restarted for a reason other than `reset` (its weights changed)."""
        decoder = decoder if decoder is not None else self.decoder
        weights = weights if weights is not None else id(decoder)
        stream, notice = self._next_state(name, decoder, weights, reset)
        self._keep(name, stream, weights, notice)
        return stream, notice

    def decode_piece(self, name: str, decode: Callable[[DecodeStream], T], decoder: ChunkDecoder,
                     weights: object, reset: bool = False) -> tuple[T, DecodeStream, str | None]:
        """Decode the next piece of stream `name` with `decode(stream)` and keep the stream as it
        is after it, evicting past the bounds. All or nothing: when `decode` raises (refused
        latents, out of memory, an interrupt), the store stays exactly as it was, its streams'
        progress, order and evicted names included. Returns (what decode returned, the stream,
        the notice of `open`)."""
        stream, notice = self._next_state(name, decoder, weights, reset)
        result = decode(stream)
        self._keep(name, stream, weights, notice)
        self.enforce_bounds(keep=name)
        return result, stream, notice

    def _next_state(self, name: str, decoder: ChunkDecoder | None, weights: object,
                    reset: bool) -> tuple[DecodeStream, str | None]:
        """The stream the next piece of `name` continues (a fresh one for a new clip, else a copy
        of the stored one) and the notice, changing nothing in the store."""
        if decoder is None:
            raise ValueError("StreamStore.open needs a decoder")
        notice = None
        if name in self._evicted:
            changed = self._evicted[name] != weights
            if not reset and not changed:
                raise InputError(
                    f"stream_name '{name}' was evicted to keep memory bounded (at most {self.max_streams} streams); "
                    "its clip cannot continue seamlessly. Set reset to start it again, or use fewer stream names."
                )
            if changed and not reset:
                notice = (f"stream '{name}' restarted: it was made with other weights (the checkpoint file was "
                          "replaced or another one is loaded), whose state cannot continue with these")
        stream = self._streams.get(name)
        if stream is None or reset or self._weights.get(name) != weights:
            if stream is not None and not reset and stream.frames_decoded:
                notice = (f"stream '{name}' restarted after {stream.frames_decoded} frames: it was made with "
                          "other weights (the checkpoint file was replaced or another one is loaded), whose "
                          "state cannot continue with these")
            return DecodeStream(decoder), notice
        # the same weights, maybe another model object (loader re-run); the stored stream stays as
        # it is until the piece succeeds
        return replace(stream, decoder=decoder), notice

    def _keep(self, name: str, stream: DecodeStream, weights: object, notice: str | None) -> None:
        """Store `stream` as `name`, most recently used."""
        self._evicted.pop(name, None)
        self._streams.pop(name, None)
        self._streams[name] = stream
        self._weights[name] = weights
        if notice:
            log.warning("TAESDV: %s", notice)

    def enforce_bounds(self, keep: str | None = None) -> list[str]:
        """Evict least recently used streams (never `keep`) until within bounds; returns their names."""
        evicted = []
        for name in list(self._streams):
            if len(self._streams) <= self.max_streams and self.state_bytes() <= self.max_bytes:
                break
            if name == keep:
                continue
            stream = self._streams.pop(name)
            weights = self._weights.pop(name, None)
            if stream.frames_decoded:
                self._evicted[name] = weights
                while len(self._evicted) > 256:
                    self._evicted.popitem(last=False)
            evicted.append(name)
        if evicted:
            log.info("TAESDV: evicted stream state of %s (bounded store)", ", ".join(evicted))
        return evicted
