"""Fuzz every input of every pack node on the real server: NaN, +/-inf, -0, huge and tiny values,
wrong types, empty and huge strings, wrong tensor shapes/dtypes/containers. Each prompt is refused
at validation or fails with the pack's own error (taesdv.InputError / taesdv.CheckpointError, no
raw Python error), or runs when the value is in fact valid; the server keeps serving, and a good
prompt gives the same output after the fuzzing as before. Plus the specific cases of issue 13.8
and the smaller ones (client id, nested JSON)."""
import json
import re
import time
import urllib.request

import pytest
import torch

import graphs
from helpers import saved, unique

PACK_ERRORS = {"taesdv.InputError", "taesdv.CheckpointError"}

NUMBERS = [float("nan"), float("inf"), float("-inf"), -0.0, 0, -1, 1e308, -1e308, 1e-308, 2 ** 63, -(2 ** 63), 3.5]
WRONG_TYPES = [True, False, "false", "true", "1", "", "x" * 100_000, None, [], [1, 2, 3], {}, {"a": 1}, "\x00"]
WIDGET_VALUES = NUMBERS + WRONG_TYPES

TENSORS = [  # (shape, dtype, fill, wrap) of TAESDVTest_AnyValue
    ("2,4,4,4", "float32", "random", "latent"), ("2,4,4,4", "float32", "nan", "latent"),
    ("2,4,4,4", "float32", "inf", "latent"), ("2,4,4,4", "float32", "huge", "latent"),
    ("2,4,4,4", "float16", "random", "latent"), ("2,4,4,4", "int64", "random", "latent"),
    ("2,4,4,4", "bool", "random", "latent"), ("2,4,4,4", "complex64", "random", "latent"),
    ("4", "float32", "random", "latent"), ("", "float32", "random", "latent"), ("0,4,4,4", "float32", "random", "latent"),
    ("2,4,0,4", "float32", "random", "latent"), ("1,2,3,4,5,6", "float32", "random", "latent"),
    ("2,16,4,4", "float32", "random", "latent"), ("1,4,2,4,4", "float32", "random", "latent"),
    ("2,4,4,4", "float32", "random", "raw"), ("2,4,4,4", "float32", "random", "list"),
    ("2,4,4,4", "float32", "random", "string"), ("2,4,4,4", "float32", "random", "none"),
    ("2,4,4,4", "float32", "random", "empty_dict"), ("2,4,4,4", "float32", "random", "nested"),
    ("2,4,4,4", "float32", "random", "tensor_list"),
    # as IMAGE: frames, height, width, channels
    ("2,16,16,3", "float32", "random", "raw"), ("2,16,16,3", "float32", "nan", "raw"), ("2,16,16,3", "float32", "inf", "raw"),
    ("2,16,16,3", "float16", "random", "raw"), ("2,16,16,3", "uint8", "random", "raw"), ("2,16,16,1", "float32", "random", "raw"),
    ("2,16,16,5", "float32", "random", "raw"), ("16,16,3", "float32", "random", "raw"), ("2,7,7,3", "float32", "random", "raw"),
    ("0,16,16,3", "float32", "random", "raw"), ("2,16,16,3", "float32", "random", "latent"),
]


def any_value(shape, dtype, fill, wrap):
    return {"class_type": "TAESDVTest_AnyValue", "inputs": {"shape": shape, "dtype": dtype, "fill": fill, "wrap": wrap}}


def base_graphs():
    """node under test -> (graph, its node id in the graph, tensor inputs and their output slot of AnyValue)."""
    sampling = graphs.sampling_graph(frames=1, size=64, steps=1, preview={"budget_percent": 100}, seed=1, save_name="fuzz_s")
    return {
        "TAESDVLoader": ({"1": graphs.loader(), "2": graphs.latent_clip(frames=2), "3": graphs.decode(),
                          "4": graphs.save_tensor("fuzz_l", images="3")}, "1", {}),
        "TAESDVDecode": ({"1": graphs.loader(), "2": graphs.latent_clip(frames=2), "3": graphs.decode(),
                          "4": graphs.save_tensor("fuzz_d", images="3")}, "3", {"samples": 0, "taesdv": 2}),
        "TAESDVStreamingDecode": ({"1": graphs.loader(), "2": graphs.latent_clip(frames=2),
                                   "3": graphs.stream(name="fuzz", reset=True), "4": graphs.save_tensor("fuzz_t", images="3")},
                                  "3", {"samples": 0, "taesdv": 2}),
        "TAESDVEncode": ({"1": graphs.loader(), "2": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 2, "color": 0}},
                          "3": graphs.encode(pixels="2"), "4": graphs.save_tensor("fuzz_e", samples="3")}, "3", {"pixels": 1, "taesdv": 2}),
        "TAESDVLatentPreview": (sampling, "20", {"model": 3, "taesdv": 2}),
    }


def fuzz_cases():
    cases = []
    for node, (graph, node_id, tensor_inputs) in base_graphs().items():
        for name, value in graph[node_id]["inputs"].items():
            if isinstance(value, list):
                continue
            for bad in WIDGET_VALUES:
                g = json.loads(json.dumps(graph))
                g[node_id]["inputs"][name] = bad
                cases.append((f"{node}.{name}={bad!r:.30}", g))
        for name, slot in tensor_inputs.items():
            for spec in TENSORS:
                g = json.loads(json.dumps(graph))
                g["90"] = any_value(*spec)
                g[node_id]["inputs"][name] = ["90", slot]
                cases.append((f"{node}.{name}<-{spec}", g))
    return cases


def post_prompt(comfy, graph, client_id):
    body = json.dumps({"prompt": graph, "client_id": client_id}).encode()  # NaN/Infinity as JSON allows in Python
    req = urllib.request.Request(comfy.url + "/prompt", data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def good_output(comfy, name):
    graph = {"1": graphs.loader(), "2": graphs.latent_clip(frames=3, seed=77), "3": graphs.decode(),
             "4": graphs.save_tensor(name, images="3")}
    run = comfy.run(graph)
    assert run.succeeded, run.error_text()
    return saved(comfy, name)["images"]


def test_fuzz_every_input_of_every_node(comfy):
    before = good_output(comfy, unique("fuzz_before"))
    cases = fuzz_cases()
    ws, client_id = comfy.connect()
    outcomes = {"refused at validation": 0, "pack error": 0, "ran (valid value)": 0}
    bad = []
    pending = {}
    started = time.perf_counter()
    try:
        for label, graph in cases:
            status, body = post_prompt(comfy, graph, client_id)
            if status == 400:
                outcomes["refused at validation"] += 1
                text = json.dumps(body)
                if "Traceback" in text or "exception_during" in text:
                    bad.append((label, text[:300]))
            elif status == 200:
                pending[body["prompt_id"]] = label
            else:
                bad.append((label, f"HTTP {status}: {body}"))
        ws.settimeout(120)
        while pending:
            frame = ws.recv()
            if not isinstance(frame, str):
                continue
            msg = json.loads(frame)
            data = msg.get("data", {})
            label = pending.get(data.get("prompt_id"))
            if label is None:
                continue
            if msg["type"] == "execution_error":
                del pending[data["prompt_id"]]
                if data.get("exception_type") in PACK_ERRORS and data.get("node_type", "").startswith("TAESDV"):
                    outcomes["pack error"] += 1
                else:
                    bad.append((label, f"{data.get('node_type')}: {data.get('exception_type')}: {data.get('exception_message')}"[:300]))
            elif msg["type"] in ("execution_success", "execution_interrupted"):
                del pending[data["prompt_id"]]
                outcomes["ran (valid value)"] += 1
    finally:
        ws.close()
    seconds = time.perf_counter() - started
    print(f"fuzz: {len(cases)} cases in {seconds:.0f}s: {outcomes}")
    assert not bad, "\n".join(f"{label}: {why}" for label, why in bad[:20])
    after = good_output(comfy, unique("fuzz_after"))
    assert torch.equal(before, after)


# -- the specific cases of issue 13.8 and the smaller ones -----------------------------------------

def node_errors(body):
    return [e for node in body.get("node_errors", {}).values() for e in node["errors"]]


def test_nan_and_booleans_are_refused_naming_only_the_bad_input(comfy):
    ws, client_id = comfy.connect()
    try:
        for name, value, message in [
            ("fps", float("nan"), r"fps must be a finite number from 1\.0 to 60\.0, got nan"),
            ("budget_percent", True, r"budget_percent must be a number from 0\.1 to 100\.0, got bool True"),
            ("max_size", float("inf"), r"max_size"),
        ]:
            graph = graphs.sampling_graph(frames=1, size=64, steps=1, preview={})
            graph["20"]["inputs"][name] = value
            status, body = post_prompt(comfy, graph, client_id)
            assert status == 400, body
            errors = node_errors(body)
            assert [e["extra_info"]["input_name"] for e in errors] == [name], errors
            assert re.search(message, json.dumps(errors)), errors
        graph = {"1": graphs.loader(), "2": graphs.latent_clip(frames=2), "3": graphs.stream(name="b", reset="false"),
                 "4": graphs.save_tensor("b", images="3")}
        status, body = post_prompt(comfy, graph, client_id)
        assert status == 400 and re.search(r"reset must be true or false \(a boolean\), got str 'false'", json.dumps(body)), body
    finally:
        ws.close()


def test_nan_pixels_are_refused_naming_pixels(comfy):
    graph = {"1": graphs.loader(), "2": any_value("2,16,16,3", "float32", "nan", "raw"), "3": graphs.encode(pixels="2"),
             "4": graphs.save_tensor(unique("n"), samples="3")}
    graph["3"]["inputs"]["pixels"] = ["2", 1]
    run = comfy.run(graph)
    assert run.error["exception_type"] == "taesdv.InputError" and "pixels contain 1 NaN" in run.error_text()


def test_a_list_as_samples_is_named(comfy):
    graph = {"1": graphs.loader(), "2": any_value("2,4,4,4", "float32", "random", "list"), "3": graphs.decode(),
             "4": graphs.save_tensor(unique("n"), images="3")}
    run = comfy.run(graph)
    assert run.error["exception_type"] == "taesdv.InputError", run.error_text()
    assert "samples must be a LATENT whose 'samples' is a tensor, got list" in run.error_text()


def test_settings_route_refuses_nan_and_booleans_as_numbers(comfy):
    for body, name in [({"fps": float("nan")}, "fps"), ({"max_size": True}, "max_size"), ({"budget": float("inf")}, "budget"),
                       ({"enabled": "false"}, "enabled"), ({"fps": 1e308}, "fps"), ({"fps": True}, "fps")]:
        status, answer = comfy.post_json("/taesdv/preview/settings", body)
        assert status == 400 and answer["error"].startswith(name), (body, answer)
    assert comfy.get_json("/taesdv/preview/settings")["fps"] == 8.0


def test_client_id_too_long_and_deeply_nested_json_get_400_with_the_reason(comfy):
    status, answer = comfy.post_json("/taesdv/preview/client", {"client_id": "c" * 257})
    assert status == 400 and "257 characters long; at most 256" in answer["error"]
    nested = "[" * 100_000 + "]" * 100_000
    for route in ("/taesdv/preview/settings", "/taesdv/preview/client"):
        req = urllib.request.Request(comfy.url + route, data=nested.encode(), method="POST")
        try:
            urllib.request.urlopen(req, timeout=30)
            raise AssertionError("accepted")
        except urllib.error.HTTPError as e:
            assert e.code == 400, (route, e.code)


# -- hostile state dicts: every family's loader refuses them with its own error ---------------------

def family_state_dicts():
    """name -> (file name, random state dict) of every family's layouts, patched TAEHV and TAE-192 included."""
    import reference_taehv
    from helpers import random_image_taesd
    from reference_taesdv import official_layout_state_dict
    from taesdv_core.fast_latent_decoders import TAE192Decoder, TemporalTAEDecoder

    return {
        "taesdv": ("taesdv.pth", official_layout_state_dict()),
        "taew2_1": ("taew2_1.pth", reference_taehv.random_state_dict("wan2_1")),
        "taew2_2": ("taew2_2.pth", reference_taehv.random_state_dict("wan2_2")),
        "taew2_2_super": ("taew2_2_super.pth", reference_taehv.random_state_dict("wan2_2_super")),
        "taeltx_2": ("taeltx_2.pth", reference_taehv.random_state_dict("ltx")),
        "taesd_decoder": ("taesd_decoder.pth", random_image_taesd("decoder")),
        "taesd_encoder": ("taesd_encoder.pth", random_image_taesd("encoder")),
        "tae192": ("tae192.safetensors", {f"decoder.{k}": v for k, v in TAE192Decoder().state_dict().items()}),
        "tae_temporal": ("tae_temporal.safetensors", TemporalTAEDecoder().state_dict()),
    }


def mutations(sd, rng):
    """(what, mutated copy) pairs: NaN/inf values, wrong dtypes, wrong and degenerate shapes, keys
    dropped, added and renamed."""
    keys = sorted(sd)
    for _ in range(24):
        key = rng.choice(keys)
        value = sd[key]
        kind = rng.choice(["nan", "inf", "int32", "bool", "drop", "add", "rename", "zero_dim", "scalar", "shape"])
        bad = dict(sd)
        if kind == "nan":
            bad[key] = value.clone().view(-1).index_fill(0, torch.tensor([0]), float("nan")).view(value.shape)
        elif kind == "inf":
            bad[key] = torch.full_like(value, float("-inf"))
        elif kind in ("int32", "bool"):
            bad[key] = value.to(getattr(torch, kind))
        elif kind == "drop":
            del bad[key]
        elif kind == "add":
            bad[key.rsplit(".", 1)[0] + ".extra"] = torch.zeros(3)
        elif kind == "rename":
            bad[key.replace(".", "_", 1)] = bad.pop(key)
        elif kind == "zero_dim":
            shape = list(value.shape) or [1]
            shape[rng.randrange(len(shape))] = 0
            bad[key] = torch.zeros(shape)
        elif kind == "scalar":
            bad[key] = torch.tensor(1.0)
        else:
            bad[key] = torch.zeros([rng.choice([0, 1, 2, 3, 5, 12, 64]) for _ in range(rng.choice([1, 2, 4]))])
        yield f"{key} {kind}", bad


def test_mutated_state_dicts_of_every_family_are_refused_with_a_checkpoint_error():
    """600-odd mutated files of every family (TAEHV and TAE-192 included): each loads to a model
    that decodes finite frames, or is refused with taesdv.CheckpointError; never a raw IndexError,
    ZeroDivisionError, ... and never a model whose decode raises."""
    import random

    from taesdv_core import CheckpointError, autoencoder_from_state_dict, decode

    rng = random.Random(20)
    raw, loaded = [], 0
    for family, (name, sd) in family_state_dicts().items():
        for what, bad in mutations(sd, rng):
            try:
                model = autoencoder_from_state_dict(bad, name)
            except CheckpointError:
                continue
            except Exception as e:  # noqa: BLE001 - the point: nothing but the pack's error
                raw.append(f"{family}: {what}: {type(e).__name__}: {e}"[:200])
                continue
            loaded += 1
            if model.decoder is not None:
                d = model.decoder
                frames = decode(d, torch.randn(1, 2, d.latent_channels, 2, 2), clamp=False)
                assert torch.isfinite(frames).all(), f"{family}: {what} loaded and decodes non-finite frames"
    assert not raw, "\n".join(raw[:20])
    assert loaded < 60  # almost every mutation breaks the file


@pytest.mark.parametrize("family,key,value,names", [
    ("taew2_1", "decoder.3.conv.0.weight", "nan", "decoder tensor 3.conv.0.weight holds NaN"),
    ("taew2_1", "decoder.22.bias", "inf", "decoder tensor 22.bias holds NaN or infinite"),
    ("taew2_1", "decoder.1.weight", "int32", "decoder tensor 1.weight is torch.int32"),
    ("taew2_2", "encoder.4.conv.0.weight", "nan", "encoder tensor 4.conv.0.weight holds NaN"),
    ("taew2_1", "encoder.0.weight", torch.zeros(64, 0, 3, 3), "encoder.0.weight has shape (64, 0, 3, 3)"),  # patch 0
    ("taew2_1", "encoder.0.weight", torch.zeros(64, 6, 3, 3), "encoder.0 takes 6 channels"),  # no whole patch
    ("taew2_1", "decoder.1.weight", torch.zeros(256, 0, 3, 3), "decoder.1.weight has shape (256, 0, 3, 3)"),  # 0 ch
    ("tae192", "decoder.layers.4.conv.0.weight", "nan", "decoder tensor layers.4.conv.0.weight holds NaN"),
    ("tae192", "decoder.layers.0.bias", "int32", "decoder tensor layers.0.bias is torch.int32"),
])
def test_taehv_and_tae192_files_with_bad_values_or_degenerate_layouts_are_refused_naming_the_tensor(
        tmp_path, family, key, value, names):
    from taesdv_core import CheckpointError, load_tiny_autoencoder
    from safetensors.torch import save_file

    name, sd = family_state_dicts()[family]
    sd = dict(sd)
    if value == "nan":
        sd[key] = sd[key].clone().fill_(float("nan"))
    elif value == "inf":
        sd[key] = sd[key].clone().fill_(float("inf"))
    elif value == "int32":
        sd[key] = sd[key].to(torch.int32)
    else:
        sd[key] = value
    path = tmp_path / name.replace(".pth", ".safetensors")
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    with pytest.raises(CheckpointError, match=re.escape(names)):
        load_tiny_autoencoder(str(path))
