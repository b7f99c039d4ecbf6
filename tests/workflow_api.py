"""UI-format workflows (what the frontend saves, example_workflows/*.json) to API-format prompts.

Does what the frontend's graphToPrompt does for plain graphs: each node the server knows becomes
{"class_type", "inputs"}; linked inputs become [origin id, origin slot]; widget values are matched
to the node's inputs in the server's input_order. Frontend-only nodes (Note, ...) and muted or
bypassed nodes are left out; a seed's extra "control after generate" value is skipped.
A dynamic combo (ComfyUI 0.33's COMFY_DYNAMICCOMBO_V3, e.g. SaveVideo's format) is followed by the
widgets of the option it names, sent as dotted names ("format", "format.codec") as the frontend does.
"""
from __future__ import annotations

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"


def _is_widget(spec) -> bool:
    return isinstance(spec[0], list) or spec[0] in WIDGET_TYPES or spec[0] == DYNAMIC_COMBO


def _option_inputs(spec, chosen) -> list:
    """(name, spec) of the inputs a dynamic combo adds when `chosen` is picked, in widget order."""
    for option in spec[1]["options"]:
        if option["key"] == chosen:
            inputs = option.get("inputs", {})
            return [*inputs.get("required", {}).items(), *inputs.get("optional", {}).items()]
    return []


def to_api(workflow: dict, object_info: dict) -> dict:
    links = {link[0]: (link[1], link[2]) for link in workflow["links"]}
    api = {}
    for node in workflow["nodes"]:
        info = object_info.get(node["type"])
        if info is None or node.get("mode", 0) in (2, 4):
            continue
        linked = {i["name"]: links[i["link"]] for i in node.get("inputs", []) if i.get("link") is not None}
        values = list(node.get("widgets_values") or [])
        specs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        order = info["input_order"].get("required", []) + info["input_order"].get("optional", [])
        pending = [(name, specs[name]) for name in order]
        inputs, next_value = {}, 0
        while pending:
            name, spec = pending.pop(0)
            value = None
            if _is_widget(spec):
                value = values[next_value] if next_value < len(values) else None
                next_value += 1
                options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                if options.get("control_after_generate"):
                    next_value += 1
                if spec[0] == DYNAMIC_COMBO:
                    pending[:0] = [(f"{name}.{sub}", sub_spec) for sub, sub_spec in _option_inputs(spec, value)]
            if name in linked:
                origin, slot = linked[name]
                inputs[name] = [str(origin), slot]
            elif value is not None:
                inputs[name] = value
        api[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return api
