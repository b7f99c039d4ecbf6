"""The one place this pack wraps a ComfyUI internal: `latent_preview.prepare_callback`; and where
it reads the running prompt's per-prompt preview method.

ComfyUI (0.3.75 to 0.33) has no public hook through which a pack can preview every sampler, nor one to
replace (rather than add to) its one-frame previewer. Every sampler node builds its callback
through this function (KSampler, KSamplerAdvanced, SamplerCustom, SamplerCustomAdvanced), so
wrapping it serves the global switch and lets TAESDV clips replace core's still frame. Where a
MODEL has no TAESDV spec and the switch is off, the original runs untouched. The node path
also works without this wrap (its OUTER_SAMPLE wrapper is a public hook); the two hand over
through live_preview.SettledCallback. Tested against the real host in tests/test_live_preview.py.
"""
from __future__ import annotations

import logging

log = logging.getLogger("taesdv")

def running_preview_method() -> str | None:
    """The running prompt's preview method (its extra_data["preview_method"]), or None."""
    try:
        from server import PromptServer
        running, _ = PromptServer.instance.prompt_queue.get_current_queue_volatile()
    except Exception:  # no server (tests of the core) or a host without the queue API
        return None
    for item in running:  # one prompt runs at a time; an item is (number, id, prompt, extra_data, ...)
        extra = item[3] if len(item) > 3 and isinstance(item[3], dict) else {}
        method = extra.get("preview_method")
        return method if isinstance(method, str) else None
    return None


def install_sampler_preview_hook() -> bool:
    """Wrap latent_preview.prepare_callback once; returns whether the wrap is in place."""
    try:
        import latent_preview
    except ImportError:
        log.warning("TAESDV: ComfyUI's latent_preview module is missing; the global preview switch is unavailable")
        return False
    original = latent_preview.prepare_callback
    if getattr(original, "taesdv_hook", False):
        return True

    from .live_preview import SettledCallback, build_callback
    from .preview_service import SERVICE

    def prepare_callback(model, steps, x0_output_dict=None):  # the signature of ComfyUI 0.3.75's
        try:
            spec = SERVICE.spec_for(model, running_preview_method())
            use_taesdv = spec is not None and spec.taesdv.serves(model.model.latent_format)
        except Exception as e:  # never let the pack break sampling
            log.warning("TAESDV preview hook: %s; using ComfyUI's previewer", e)
            use_taesdv = False
        if not use_taesdv:
            return original(model, steps, x0_output_dict)
        try:
            return build_callback(model, steps, spec, x0_output_dict)
        except Exception as e:  # e.g. a model without a decoder: ComfyUI's previews, one log line
            log.warning("TAESDV previews unavailable for this run (%s); using ComfyUI's previewer", e)
            return SettledCallback(original(model, steps, x0_output_dict), preview=None)

    prepare_callback.taesdv_hook = True
    prepare_callback.__wrapped__ = original
    latent_preview.prepare_callback = prepare_callback
    return True
