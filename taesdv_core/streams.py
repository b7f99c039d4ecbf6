"""A bounded store of named decode streams (for decoding that continues across queue runs)."""
from __future__ import annotations

import logging
from collections import OrderedDict

from .engine import DecodeStream
from .errors import InputError
from .layers import ChunkDecoder

log = logging.getLogger("taesdv")


class StreamStore:
    """Named `DecodeStream`s, least recently used evicted past `max_streams` or `max_bytes` of state."""

    def __init__(self, decoder: ChunkDecoder, max_streams: int = 16, max_bytes: int = 2 << 30):
        self.decoder = decoder
        self.max_streams = max_streams
        self.max_bytes = max_bytes
        self._streams: OrderedDict[str, DecodeStream] = OrderedDict()
        # Names evicted mid-clip: continuing one would silently restart it (a visible seam), so it
        # is refused until reset. Bounded, oldest forgotten first.
        self._evicted: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._streams)

    def __contains__(self, name: str) -> bool:
        return name in self._streams

    def state_bytes(self) -> int:
        return sum(s.state_bytes() for s in self._streams.values())

    def get(self, name: str, reset: bool = False) -> DecodeStream:
        """The stream called `name` (created empty if new), marked most recently used."""
        if name in self._evicted:
            if not reset:
                raise InputError(
                    f"stream_name '{name}' was evicted to keep memory bounded (at most {self.max_streams} streams); "
                    "its clip cannot continue seamlessly. Set reset to start it again, or use fewer stream names."
                )
            del self._evicted[name]
        stream = self._streams.pop(name, None)
        if stream is None:
            stream = DecodeStream(self.decoder)
        elif reset:
            stream.reset()
        self._streams[name] = stream
        return stream

    def enforce_bounds(self, keep: str | None = None) -> list[str]:
        """Evict least recently used streams (never `keep`) until within bounds; returns their names."""
        evicted = []
        for name in list(self._streams):
            if len(self._streams) <= self.max_streams and self.state_bytes() <= self.max_bytes:
                break
            if name == keep:
                continue
            stream = self._streams.pop(name)
            if stream.frames_decoded:
                self._evicted[name] = None
                while len(self._evicted) > 256:
                    self._evicted.popitem(last=False)
            evicted.append(name)
        if evicted:
            log.info("TAESDV: evicted stream state of %s (bounded store)", ", ".join(evicted))
        return evicted
