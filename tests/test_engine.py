"""The decode engine equals an independent re-implementation of the documented architecture,
for every path (parallel, chunked, streaming), clip length, size and chunk split."""
import pytest
import torch
import torch.nn.functional as F

from helpers import SAME_FRAMES, frames_to_match, set_frame_by_frame
from reference_taesdv import official_layout_state_dict, reference_decode, reference_encode
from taesdv_core import DecodeStream, InputError, TAESDV, decode, encode, model_from_state_dict
from taesdv_core.engine import ACCELERATOR_CHUNK_FRAMES, auto_chunk_frames
from taesdv_core.model import TAESDVDecoder


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.fixture(scope="module")
def model(state_dict):
    return model_from_state_dict(state_dict)


@pytest.fixture(scope="module")
def models_by_dtype(state_dict, model):
    return {torch.float32: model, torch.bfloat16: model_from_state_dict(state_dict, dtype=torch.bfloat16)}


def test_model_has_the_official_layout():
    sd = TAESDV().state_dict()
    assert len(sd) == 134
    assert sum(v.numel() for v in sd.values()) == 2_813_703
    assert sum(v.numel() for k, v in sd.items() if k.startswith("encoder.")) == 1_222_532
    assert {k: tuple(v.shape) for k, v in sd.items()} == {k: tuple(v.shape) for k, v in official_layout_state_dict().items()}


def test_flop_count_matches_the_documented_figures():
    decoder = TAESDVDecoder()
    assert decoder.flops_per_frame(256, 256) / 1e9 == pytest.approx(44.9, abs=0.05)
    assert decoder.flops_per_frame(512, 512) / 1e9 == pytest.approx(179.7, abs=0.05)


@pytest.mark.parametrize("frames,height,width", [(1, 4, 4), (2, 5, 3), (7, 9, 6), (12, 8, 8), (17, 3, 11)])
@pytest.mark.parametrize("chunk", [1, 2, 3, 5, None, 10_000])
@pytest.mark.parametrize("frame_major", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_chunked_decode_equals_reference(models_by_dtype, state_dict, frames, height, width, chunk, frame_major, dtype,
                                         monkeypatch):
    set_frame_by_frame(monkeypatch, frame_major)
    decoder = models_by_dtype[dtype].decoder
    latents = torch.randn(1, frames, 4, height, width, generator=torch.Generator().manual_seed(frames * 31 + height))
    expected = frames_to_match(dtype, decoder, latents, reference_decode(state_dict, latents))
    got = decode(decoder, latents, chunk_frames=chunk, clamp=False)
    assert got.shape == (1, frames, 3, height * 8, width * 8) and got.dtype == torch.float32
    assert rel_err(got, expected) < SAME_FRAMES[dtype]


def test_unfused_path_used_on_gpus_equals_reference(model, state_dict, monkeypatch):
    # No GPU here: run the plain-PyTorch layer path that GPUs take (no oneDNN fusion, batched chunks).
    import taesdv_core.fused_ops as fused_ops

    monkeypatch.setattr(fused_ops, "_fusable", lambda *tensors: False)
    set_frame_by_frame(monkeypatch, False)
    latents = torch.randn(2, 7, 4, 5, 6)
    for chunk in (1, 3, 7):
        got = decode(model.decoder, latents, chunk_frames=chunk, clamp=False)
        assert rel_err(got, reference_decode(state_dict, latents)) < 1e-5


@pytest.mark.parametrize("cpu_path", [True, False])
@pytest.mark.parametrize("bias,relu", [(True, False), (False, True)])
@pytest.mark.parametrize("height,width", [(1, 1), (3, 5), (8, 7)])
def test_conv_after_nearest_upsampling_equals_upsample_then_conv(cpu_path, bias, relu, height, width, monkeypatch):
    # CPUs run the pair as four 2x2 phase convs at the low resolution; elsewhere it upsamples first.
    import taesdv_core.fused_ops as fused_ops

    phase_calls = []
    phase_kernels = fused_ops._phase_kernels
    monkeypatch.setattr(fused_ops, "_phase_kernels", lambda w: phase_calls.append(w) or phase_kernels(w))
    if not cpu_path:
        monkeypatch.setattr(fused_ops, "_fusable", lambda *tensors: False)
    torch.manual_seed(10 * height + width)
    layer = torch.nn.Conv2d(5, 7, 3, padding=1, bias=bias).to(memory_format=torch.channels_last).requires_grad_(False)
    x = torch.randn(2, 5, height, width).contiguous(memory_format=torch.channels_last)
    expected = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), layer.weight, layer.bias, padding=1)
    got = fused_ops.upsampled_conv(layer, x, relu)
    assert len(phase_calls) == (1 if cpu_path else 0)
    assert got.shape == (2, 7, 2 * height, 2 * width)
    assert rel_err(got, expected.relu() if relu else expected) < 1e-5


@pytest.mark.parametrize("cpu_path", [True, False])
@pytest.mark.parametrize("relu,act", [(True, None), (False, torch.nn.LeakyReLU(0.2)), (False, None)])
@pytest.mark.parametrize("height,width,band_pixels", [(1, 1, 16384), (3, 5, 16384), (8, 7, 16384), (8, 7, 8), (9, 4, 10)])
def test_two_convs_after_nearest_upsampling_equal_upsample_then_convs(cpu_path, relu, act, height, width, band_pixels, monkeypatch):
    # CPUs run conv, activation, conv on the four phases, in bands of rows, never building the
    # full-size activation; elsewhere it upsamples first.
    import taesdv_core.fused_ops as fused_ops

    pair_kernels = []
    conv_on_phases_kernels = fused_ops._conv_on_phases_kernels
    monkeypatch.setattr(fused_ops, "_conv_on_phases_kernels", lambda w: pair_kernels.append(w) or conv_on_phases_kernels(w))
    monkeypatch.setattr(fused_ops, "PAIR_BAND_PIXELS", band_pixels)
    if not cpu_path:
        monkeypatch.setattr(fused_ops, "_fusable", lambda *tensors: False)
    torch.manual_seed(10 * height + width)
    first = torch.nn.Conv2d(5, 6, 3, padding=1, bias=False).to(memory_format=torch.channels_last).requires_grad_(False)
    second = torch.nn.Conv2d(6, 3, 3, padding=1).to(memory_format=torch.channels_last).requires_grad_(False)
    x = torch.randn(2, 5, height, width).contiguous(memory_format=torch.channels_last)
    between = first(F.interpolate(x, scale_factor=2, mode="nearest"))
    between = between.relu() if relu else between
    expected = second(between if act is None else act(between.clone()))
    got = fused_ops.upsampled_conv_pair(first, second, x, relu, act)
    assert len(pair_kernels) == (1 if cpu_path else 0)
    assert got.shape == (2, 3, 2 * height, 2 * width)
    assert rel_err(got, expected) < 1e-5


@pytest.mark.parametrize("kwargs", [{"dilation": 2}, {"padding_mode": "reflect"}])
def test_convs_the_phase_split_does_not_fit_upsample_first(kwargs):
    from taesdv_core.fused_ops import upsampled_conv

    conv = torch.nn.Conv2d(5, 7, 3, **{"padding": 1, **kwargs}).to(memory_format=torch.channels_last).requires_grad_(False)
    x = torch.randn(2, 5, 4, 5).contiguous(memory_format=torch.channels_last)
    assert torch.allclose(upsampled_conv(conv, x), conv(F.interpolate(x, scale_factor=2, mode="nearest")))


@pytest.mark.parametrize("frame_major", [False, True])
def test_several_clips_decode_independently(model, state_dict, frame_major, monkeypatch):
    set_frame_by_frame(monkeypatch, frame_major)
    latents = torch.randn(3, 6, 4, 5, 7)
    got = decode(model.decoder, latents, chunk_frames=4, clamp=False)
    assert rel_err(got, reference_decode(state_dict, latents)) < 1e-5
    alone = decode(model.decoder, latents[1:2], chunk_frames=4, clamp=False)
    assert rel_err(got[1:2], alone) < 1e-5


@pytest.mark.parametrize("pieces", [[1] * 9, [4, 5], [2, 1, 3, 3], [9]])
@pytest.mark.parametrize("chunk", [1, 2, None])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_stream_in_pieces_equals_reference(models_by_dtype, state_dict, pieces, chunk, dtype):
    decoder = models_by_dtype[dtype].decoder
    latents = torch.randn(1, sum(pieces), 4, 6, 5, generator=torch.Generator().manual_seed(len(pieces)))
    expected = frames_to_match(dtype, decoder, latents, reference_decode(state_dict, latents))
    stream = DecodeStream(decoder)
    outs, start = [], 0
    for n in pieces:
        outs.append(stream.decode(latents[:, start:start + n], chunk_frames=chunk, clamp=False))
        start += n
    assert stream.frames_decoded == sum(pieces)
    assert rel_err(torch.cat(outs, 1), expected) < SAME_FRAMES[dtype]


def test_tchw_input_gives_tchw_output_and_clamped_frames(model):
    latents = torch.randn(5, 4, 4, 4) * 3
    frames = decode(model.decoder, latents)
    assert frames.shape == (5, 3, 32, 32)
    assert frames.min() >= 0 and frames.max() <= 1


def test_stream_state_is_constant_size_and_matches_the_estimate(model):
    stream = DecodeStream(model.decoder)
    sizes = []
    for _ in range(6):
        stream.decode(torch.randn(1, 3, 4, 8, 8))
        sizes.append(stream.state_bytes())
    assert len(set(sizes)) == 1
    assert sizes[0] == TAESDVDecoder.state_bytes(64, 64, 4)


def test_stream_refuses_a_piece_of_another_shape_until_reset(model):
    stream = DecodeStream(model.decoder)
    stream.decode(torch.randn(1, 2, 4, 8, 8))
    with pytest.raises(InputError, match="do not continue this stream.*reset"):
        stream.decode(torch.randn(1, 2, 4, 8, 16))
    stream.reset()
    assert stream.decode(torch.randn(1, 2, 4, 8, 16)).shape == (1, 2, 3, 64, 128)


def test_stream_state_follows_the_model_to_another_dtype(state_dict):
    model = model_from_state_dict(state_dict)
    stream = DecodeStream(model.decoder)
    latents = torch.randn(1, 4, 4, 4, 4)
    first = stream.decode(latents[:, :2])
    model.to(torch.bfloat16)  # as when a host re-loads the model in another precision
    second = stream.decode(latents[:, 2:])
    assert stream.memory[0].dtype == torch.bfloat16
    expected = decode(model_from_state_dict(state_dict).decoder, latents)
    assert (torch.cat([first, second], 1) - expected).abs().max() < 0.05


def test_reset_stream_starts_a_new_clip(model, state_dict):
    stream = DecodeStream(model.decoder)
    stream.decode(torch.randn(1, 4, 4, 4, 4))
    stream.reset()
    fresh = torch.randn(1, 3, 4, 4, 4)
    assert rel_err(stream.decode(fresh, clamp=False), reference_decode(state_dict, fresh)) < 1e-5


@pytest.mark.parametrize("frame_major", [False, True])
def test_out_of_memory_in_a_chunk_is_retried_smaller_with_identical_output(model, state_dict, frame_major, monkeypatch):
    set_frame_by_frame(monkeypatch, frame_major)
    latents = torch.randn(1, 11, 4, 5, 5)
    calls = []
    real = model.decoder.forward_chunk

    def failing_twice(x, memory):
        calls.append(x.shape[1])
        if len(calls) <= 2:
            raise torch.OutOfMemoryError("injected: CUDA out of memory")
        return real(x, memory)

    seen = []
    model.decoder.forward_chunk = failing_twice
    try:
        got = decode(model.decoder, latents, chunk_frames=8, clamp=False,
                     progress=lambda done, total: seen.append(done))
    finally:
        del model.decoder.forward_chunk
    assert seen == [2, 4, 6, 8, 10, 11]  # 8 failed, 4 failed, then chunks of 2
    assert calls[:3] == ([1, 1, 1] if frame_major else [8, 4, 2])
    assert rel_err(got, reference_decode(state_dict, latents)) < 1e-5


def test_out_of_memory_on_a_single_frame_is_raised(model):
    def always_failing(x, memory):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 99 bytes")

    model.decoder.forward_chunk = always_failing
    try:
        with pytest.raises(RuntimeError, match="can't allocate"):
            decode(model.decoder, torch.randn(1, 4, 4, 4, 4), chunk_frames=4)
    finally:
        del model.decoder.forward_chunk


def test_progress_is_reported_after_each_chunk_and_can_stop_the_work(model):
    seen = []
    decode(model.decoder, torch.randn(1, 7, 4, 4, 4), chunk_frames=3, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(3, 7), (6, 7), (7, 7)]

    class Stop(Exception):
        pass

    def stop_after_first(done, total):
        raise Stop()

    with pytest.raises(Stop):
        decode(model.decoder, torch.randn(1, 7, 4, 4, 4), chunk_frames=3, progress=stop_after_first)


def test_auto_chunk_respects_free_memory():
    cpu = torch.device("cpu")
    d, cuda = TAESDVDecoder(), torch.device("cuda")
    assert auto_chunk_frames(d, 64, 64, 64, 4, cpu, None) == 8  # frame by frame; chunks only pace progress
    assert ACCELERATOR_CHUNK_FRAMES == 16  # chosen from H100 measurements (engine.preferred_chunk_frames)
    assert auto_chunk_frames(d, 64, 64, 64, 2, cuda, 64 << 30) == 16
    assert auto_chunk_frames(d, 5, 64, 64, 2, cuda, 64 << 30) == 5
    assert auto_chunk_frames(d, 64, 64, 64, 2, cuda, 1 << 30) < 64
    assert auto_chunk_frames(d, 64, 64, 64, 2, cuda, 1) == 1


@pytest.mark.parametrize("bad,match", [
    (torch.randn(1, 3, 16, 4, 4), "16 channels.*Wan"),
    (torch.randn(1, 0, 4, 4, 4), "0 frames"),
    (torch.randn(4, 4, 4), "NTCHW or TCHW"),
    (torch.ones(1, 2, 4, 4, 4, dtype=torch.int64), "floating point"),
])
def test_bad_latents_are_refused_with_a_clear_message(model, bad, match):
    with pytest.raises(InputError, match=match):
        decode(model.decoder, bad)


def test_encode_equals_reference_per_frame(model, state_dict):
    frames = torch.rand(2, 3, 3, 24, 40)
    got = encode(model.encoder, frames, chunk_frames=4)
    assert got.shape == (2, 3, 4, 3, 5)
    assert rel_err(got, reference_encode(state_dict, frames)) < 1e-5


def test_encode_refuses_sizes_that_are_not_multiples_of_8(model):
    with pytest.raises(InputError, match="multiples of 8"):
        encode(model.encoder, torch.rand(2, 3, 20, 16))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_decodes_close_to_fp32(state_dict, dtype):
    latents = torch.randn(1, 3, 4, 4, 4)
    fp32 = decode(model_from_state_dict(state_dict).decoder, latents)
    half = decode(model_from_state_dict(state_dict, dtype=dtype).decoder, latents)
    assert half.dtype == torch.float32
    assert (half - fp32).abs().max() < 0.05


# -- frames leave the device through FrameSink: the overlap bookkeeping, run on the CPU --------

class DeferredCopies:
    """Stands in for engine.PinnedCopies on the CPU: a copy 'lands' only when its event is waited
    for, as an asynchronous device-to-host copy does; reading the host tensor before waiting reads
    garbage (NaN). Records the order of starts and waits."""

    def __init__(self, log):
        self.log = log

    def start(self, laid):
        assert laid.is_contiguous(), "the chunk is laid out on the device before it is copied"
        index = sum(1 for entry in self.log if entry[0] == "start")
        host = torch.full(laid.shape, float("nan"), dtype=laid.dtype)
        log = self.log

        class Arrival:
            def synchronize(self):
                host.copy_(laid)
                log.append(("waited", index))

        self.log.append(("start", index, laid.dtype))
        return host, Arrival()


def deferred_transfer(monkeypatch, log):
    import taesdv_core.engine as engine

    monkeypatch.setattr(engine, "host_transfer", lambda device, out_device: DeferredCopies(log))


@pytest.mark.parametrize("layout", ["NTCHW", "NTHWC"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_copy_of_a_chunk_overlaps_the_next_chunk_and_the_frames_are_unchanged(state_dict, monkeypatch, layout, dtype):
    set_frame_by_frame(monkeypatch, False)  # copies to the host exist on GPUs, where a chunk runs as one batch
    model = model_from_state_dict(state_dict, dtype=dtype)
    latents = torch.randn(2, 7, 4, 4, 5)
    direct = decode(model.decoder, latents, chunk_frames=3, layout=layout)
    log, progress = [], []
    deferred_transfer(monkeypatch, log)
    got = decode(model.decoder, latents, chunk_frames=3, layout=layout,
                 progress=lambda done, total: log.append(("progress", done)))
    assert got.dtype == torch.float32 and not got.isnan().any()
    assert torch.equal(got, direct)
    # chunk k's copy is started, and only then is chunk k-1 waited for and written out
    assert [e[:2] for e in log] == [("start", 0), ("progress", 3), ("start", 1), ("waited", 0), ("progress", 6),
                                    ("start", 2), ("waited", 1), ("progress", 7), ("waited", 2)]
    assert {e[2] for e in log if e[0] == "start"} == {dtype}  # copied in the working dtype, converted once after


def test_nthwc_output_is_the_ntchw_output_permuted(model):
    latents = torch.randn(2, 5, 4, 3, 6)
    ntchw = decode(model.decoder, latents, chunk_frames=2)
    nthwc = decode(model.decoder, latents, chunk_frames=2, layout="NTHWC")
    assert nthwc.shape == (2, 5, 24, 48, 3)
    assert torch.equal(nthwc, ntchw.permute(0, 1, 3, 4, 2))


def test_out_of_memory_retry_with_a_copy_in_flight_gives_identical_frames(model, monkeypatch):
    set_frame_by_frame(monkeypatch, False)
    latents = torch.randn(1, 9, 4, 4, 4)
    expected = decode(model.decoder, latents, chunk_frames=9, clamp=False)
    real, calls, log = model.decoder.forward_chunk, [], []

    def failing_once(x, memory):
        calls.append(x.shape[1])
        if len(calls) == 2:  # the second chunk, while the first one's copy is still pending
            raise torch.OutOfMemoryError("injected: CUDA out of memory")
        return real(x, memory)

    deferred_transfer(monkeypatch, log)
    model.decoder.forward_chunk = failing_once
    try:
        got = decode(model.decoder, latents, chunk_frames=4, clamp=False)
    finally:
        del model.decoder.forward_chunk
    assert calls == [4, 4, 2, 2, 1]
    assert rel_err(got, expected) < 1e-5  # batches of other sizes round differently


def test_a_failed_piece_waits_for_its_copies_and_leaves_the_stream_as_it_was(model, monkeypatch):
    latents = torch.randn(1, 8, 4, 4, 4)
    log = []
    deferred_transfer(monkeypatch, log)
    stream = DecodeStream(model.decoder)
    first = stream.decode(latents[:, :2])

    class Stop(Exception):
        pass

    def stop_after_two_chunks(done, total):
        if done == 4:
            raise Stop()

    with pytest.raises(Stop):
        stream.decode(latents[:, 2:], chunk_frames=2, progress=stop_after_two_chunks)
    starts = [e for e in log if e[0] == "start"]
    waits = [e for e in log if e[0] == "waited"]
    assert len(waits) == len(starts)  # nothing left in flight
    assert stream.latent_frames == 2
    rest = stream.decode(latents[:, 2:])
    assert torch.equal(torch.cat([first, rest], 1), decode(model.decoder, latents))


def test_cpu_and_gpu_output_need_no_host_transfer():
    from taesdv_core.engine import host_transfer

    assert host_transfer(torch.device("cpu"), torch.device("cpu")) is None
    assert host_transfer(torch.device("cuda"), torch.device("cuda")) is None  # output kept on the GPU


# -- fp32 means fp32; tf32 is a choice -----------------------------------------------------------

def precision_flags():
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        return conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision
    return torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32


def flags_seen_by_the_layers(decoder, run):
    seen, real = [], decoder.forward_chunk

    def recording(x, memory):
        seen.append(precision_flags())
        return real(x, memory)

    decoder.forward_chunk = recording
    try:
        run()
    finally:
        del decoder.forward_chunk
    return set(seen)


@pytest.mark.parametrize("dtype,expected", [("fp32", {("ieee", "ieee")}), ("tf32", {("tf32", "tf32")})])
def test_fp32_decodes_without_tf32_and_tf32_is_an_explicit_choice(checkpoint_path, dtype, expected):
    from taesdv_core import load_taesdv

    model = load_taesdv(checkpoint_path, dtype=dtype)
    assert next(model.parameters()).dtype == torch.float32
    assert model.decoder.allow_tf32 == model.encoder.allow_tf32 == (dtype == "tf32")
    before = precision_flags()
    if not isinstance(before[0], str):  # torch < 2.9: the allow_tf32 booleans
        expected = {(dtype == "tf32",) * 2}
    assert flags_seen_by_the_layers(model.decoder, lambda: decode(model.decoder, torch.randn(1, 3, 4, 4, 4))) == expected
    assert precision_flags() == before  # restored after the work

    class Stop(Exception):
        pass

    def stop(done, total):
        raise Stop()

    with pytest.raises(Stop):
        decode(model.decoder, torch.randn(1, 3, 4, 4, 4), chunk_frames=1, progress=stop)
    assert precision_flags() == before  # and after a failure


def test_encode_runs_in_exact_fp32_too(checkpoint_path):
    from taesdv_core import load_taesdv

    model = load_taesdv(checkpoint_path, dtype="fp32")
    seen, real = [], model.encoder.forward_chunk

    def recording(x, memory):
        seen.append(precision_flags())
        return real(x, memory)

    model.encoder.forward_chunk = recording
    try:
        encode(model.encoder, torch.rand(1, 2, 3, 16, 16))
    finally:
        del model.encoder.forward_chunk
    assert seen and all(flag in ("ieee", False) for flags in seen for flag in flags)


def test_cli_accepts_dtype_tf32(checkpoint_path, tmp_path):
    from safetensors.torch import load_file, save_file
    from taesdv_core.__main__ import main

    save_file({"latents": torch.randn(1, 2, 4, 4, 4)}, str(tmp_path / "in.safetensors"))
    outputs = {}
    for dtype in ("fp32", "tf32"):
        out = tmp_path / f"{dtype}.safetensors"
        assert main(["decode", str(tmp_path / "in.safetensors"), "-w", checkpoint_path, "-o", str(out),
                     "--dtype", dtype, "--device", "cpu"]) == 0
        outputs[dtype] = load_file(str(out))["frames"]
    assert torch.equal(outputs["fp32"], outputs["tf32"])  # TF32 exists on CUDA only
