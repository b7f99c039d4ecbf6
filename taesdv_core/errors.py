"""The pack's two error types. ComfyUI's error dialog shows an exception's module and name, so
both say "taesdv.…" rather than a loader path."""


class InputError(ValueError):
    """Latents, frames or settings that cannot be used; the message names the input and the fix."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message says why and what to do."""


for _error in (InputError, CheckpointError):
    _error.__module__ = "taesdv"
