"""The decode engine equals an independent re-implementation of the documented architecture,
for every path (parallel, chunked, streaming), clip length, size and chunk split."""
import pytest
import torch

from reference_taesdv import official_layout_state_dict, reference_decode, reference_encode
from taesdv_core import DecodeStream, InputError, TAESDV, decode, encode, model_from_state_dict
from taesdv_core.engine import auto_chunk_frames
from taesdv_core.model import TAESDVDecoder


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def set_frame_by_frame(monkeypatch, on: bool) -> None:
    """Choose how chunks run: frame by frame (the CPU path) or as one batch (the GPU path)."""
    import taesdv_core.engine as engine

    monkeypatch.setattr(engine, "runs_frame_by_frame", lambda device: on)


@pytest.fixture(scope="module")
def model(state_dict):
    return model_from_state_dict(state_dict)


def test_model_has_the_official_layout():
    sd = TAESDV().state_dict()
    assert len(sd) == 134
    assert sum(v.numel() for v in sd.values()) == 2_813_703
    assert sum(v.numel() for k, v in sd.items() if k.startswith("encoder.")) == 1_222_532
    assert {k: tuple(v.shape) for k, v in sd.items()} == {k: tuple(v.shape) for k, v in official_layout_state_dict().items()}


def test_flop_count_matches_the_documented_figures():
    assert TAESDVDecoder.flops_per_frame(256, 256) / 1e9 == pytest.approx(44.9, abs=0.05)
    assert TAESDVDecoder.flops_per_frame(512, 512) / 1e9 == pytest.approx(179.7, abs=0.05)


@pytest.mark.parametrize("frames,height,width", [(1, 4, 4), (2, 5, 3), (7, 9, 6), (12, 8, 8), (17, 3, 11)])
@pytest.mark.parametrize("chunk", [1, 2, 3, 5, None, 10_000])
@pytest.mark.parametrize("frame_major", [False, True])
def test_chunked_decode_equals_reference(model, state_dict, frames, height, width, chunk, frame_major, monkeypatch):
    set_frame_by_frame(monkeypatch, frame_major)
    latents = torch.randn(1, frames, 4, height, width, generator=torch.Generator().manual_seed(frames * 31 + height))
    expected = reference_decode(state_dict, latents)
    got = decode(model.decoder, latents, chunk_frames=chunk, clamp=False)
    assert got.shape == (1, frames, 3, height * 8, width * 8)
    assert rel_err(got, expected) < 1e-5


def test_unfused_path_used_on_gpus_equals_reference(model, state_dict, monkeypatch):
    # No GPU here: run the plain-PyTorch layer path that GPUs take (no oneDNN fusion, batched chunks).
    import taesdv_core.fused_ops as fused_ops

    monkeypatch.setattr(fused_ops, "_fusable", lambda *tensors: False)
    set_frame_by_frame(monkeypatch, False)
    latents = torch.randn(2, 7, 4, 5, 6)
    for chunk in (1, 3, 7):
        got = decode(model.decoder, latents, chunk_frames=chunk, clamp=False)
        assert rel_err(got, reference_decode(state_dict, latents)) < 1e-5


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
def test_stream_in_pieces_equals_reference(model, state_dict, pieces, chunk):
    latents = torch.randn(1, sum(pieces), 4, 6, 5, generator=torch.Generator().manual_seed(len(pieces)))
    stream = DecodeStream(model.decoder)
    outs, start = [], 0
    for n in pieces:
        outs.append(stream.decode(latents[:, start:start + n], chunk_frames=chunk, clamp=False))
        start += n
    assert stream.frames_decoded == sum(pieces)
    assert rel_err(torch.cat(outs, 1), reference_decode(state_dict, latents)) < 1e-5


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
    assert auto_chunk_frames(d, 64, 64, 64, 2, cuda, 64 << 30) == 64
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
