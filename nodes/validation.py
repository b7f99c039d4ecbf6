"""One check for every value the pack accepts: node inputs, the preview settings route.

Numbers must be real numbers (not booleans), finite and within the input's range; booleans must
be booleans; strings strings of bounded length; combo values one of the options. Each failure
names the one input that is wrong.

ComfyUI 0.3.75 converts widget values before a node sees them (`bool("false")` is True,
`float(True)` is 1.0, and NaN passes its min/max checks), so the pack checks twice:
- `check_prompt` (a /prompt handler) sees the raw JSON values of the pack's nodes; a bad one is
  replaced by a `RefusedValue` whose conversion fails, so the host refuses the prompt at
  validation with the pack's message, under that one input's name;
- `check_inputs` (first line of every node's execute) checks what the node got, linked values
  included, and raises taesdv.InputError.
"""
from __future__ import annotations

import functools
import logging
import math

from comfy_api.latest import io

from ..taesdv_core.errors import InputError

log = logging.getLogger("taesdv")

MAX_STRING = 1024


def check_number(name: str, value, low=None, high=None, integer: bool = False):
    """value as an int/float, or InputError naming `name`."""
    kind = "an integer" if integer else "a number"
    span = f" from {low} to {high}" if low is not None and high is not None else ""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)
                                                                         and not float(value).is_integer()):
        raise InputError(f"{name} must be {kind}{span}, got {type(value).__name__} {value!r:.40}")
    # JSON integers have any length: math.isfinite() of a 400-digit one raises OverflowError
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"{name} must be a finite number{span}, got {value}")
    if (low is not None and value < low) or (high is not None and value > high):
        shown = f"an integer of {len(str(abs(value)))} digits" if isinstance(value, int) and abs(value) > 2**53 else value
        raise InputError(f"{name} must be {kind}{span}, got {shown}")
    return int(value) if integer else value


def check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{name} must be true or false (a boolean), got {type(value).__name__} {value!r:.40}")
    return value


def check_string(name: str, value, limit: int = MAX_STRING) -> str:
    if not isinstance(value, str):
        raise InputError(f"{name} must be a string, got {type(value).__name__}")
    if len(value) > limit:
        raise InputError(f"{name} is {len(value)} characters long; at most {limit}")
    if "\x00" in value:
        raise InputError(f"{name} contains a NUL character")
    return value


def check_widget(widget, value):
    """A value for one of the schema's widget inputs (io.Int/Float/Boolean/String/Combo.Input)."""
    name = widget.id
    if isinstance(widget, io.Boolean.Input):
        return check_bool(name, value)
    if isinstance(widget, (io.Int.Input, io.Float.Input)):
        return check_number(name, value, widget.min, widget.max, integer=isinstance(widget, io.Int.Input))
    if isinstance(widget, io.String.Input):
        return check_string(name, value)
    if isinstance(widget, io.Combo.Input):
        if not isinstance(value, str):
            raise InputError(f"{name} must be one of the listed names (a string), got {type(value).__name__}")
        return check_string(name, value)  # membership: the node's validate_inputs or execute
    return value


_WIDGETS = (io.Boolean.Input, io.Int.Input, io.Float.Input, io.String.Input, io.Combo.Input)


def widgets(node_cls) -> dict:
    cache = node_cls.__dict__.get("_taesdv_widgets")
    if cache is None:
        cache = {i.id: i for i in node_cls.define_schema().inputs if isinstance(i, _WIDGETS)}
        node_cls._taesdv_widgets = cache
    return cache


def check_inputs(node_cls, **values) -> None:
    """Check a node's values as execute got them (widgets; `taesdv` a loaded model, `model` a
    MODEL); raises InputError naming the bad input."""
    from .managed_model import ManagedAutoencoder

    specs = widgets(node_cls)
    for name, value in values.items():
        if name in specs:
            check_widget(specs[name], value)
        elif name == "taesdv" and not isinstance(value, ManagedAutoencoder):
            raise InputError(f"taesdv must be a loaded tiny autoencoder (from Load TAESDV), got {type(value).__name__}")
        elif name == "model" and not (hasattr(value, "clone") and isinstance(getattr(value, "model_options", None), dict)):
            raise InputError(f"model must be a MODEL (a diffusion model), got {type(value).__name__}")


class RefusedValue(str):
    """Stands in for a refused raw value: shows as the pack's message, and every conversion the
    host tries (bool, int, float) fails with it, so the host refuses the input by name."""

    def _refuse(self, *args):
        raise ValueError(str.__str__(self))

    __bool__ = __int__ = __float__ = __index__ = _refuse


def check_prompt(json_data, node_classes: tuple = ()):
    """PromptServer on_prompt handler: refuse bad raw widget values of the pack's nodes
    (`node_classes`, handed over by install_prompt_check; see above)."""
    prompt = json_data.get("prompt") if isinstance(json_data, dict) else None
    if not isinstance(prompt, dict):
        return json_data
    by_id = {cls.define_schema().node_id: cls for cls in node_classes}
    for node in prompt.values():
        cls = by_id.get(node.get("class_type")) if isinstance(node, dict) else None
        inputs = node.get("inputs") if cls is not None else None
        if not isinstance(inputs, dict):
            continue
        specs = widgets(cls)
        for name, value in list(inputs.items()):
            widget = specs.get(name)
            if widget is None or (isinstance(value, list) and len(value) == 2):  # a link: checked in execute
                continue
            if isinstance(value, dict) and "__value__" in value:
                value = value["__value__"]
            if isinstance(widget, (io.String.Input, io.Combo.Input)):
                continue  # the host's str() cannot be made to fail: length and options are checked in execute
            try:
                check_widget(widget, value)
            except InputError as e:
                inputs[name] = RefusedValue(str(e))
    return json_data


def install_prompt_check(node_classes) -> None:
    """Register check_prompt for these node classes (the package's NODES), once per server."""
    from server import PromptServer

    server = PromptServer.instance
    if not any(getattr(h, "taesdv_check", False) for h in server.on_prompt_handlers):
        handler = functools.partial(check_prompt, node_classes=tuple(node_classes))
        handler.taesdv_check = True
        server.add_on_prompt_handler(handler)
