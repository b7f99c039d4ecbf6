"""CV-VAE keyframes spread over 1 + 4(T-1) frames: held or blended."""
import re

import pytest
import torch

from taesdv_core.keyframes import expand_keyframes, expanded_length


def keyframes(t=3):
    """Keyframe i is an image filled with the value i (two clips: i and 10 + i)."""
    values = torch.arange(t, dtype=torch.float32)
    k = values.view(1, t, 1, 1, 1).expand(2, t, 3, 2, 2).clone()
    k[1] += 10
    return k


def values(frames):
    return frames[0, :, 0, 0, 0].tolist()


def test_keyframes_mode_is_unchanged():
    k = keyframes()
    assert torch.equal(expand_keyframes(k, "keyframes"), k)


def test_repeat_holds_each_keyframe_over_its_latent_frames_group():
    out = expand_keyframes(keyframes(3), "repeat")
    assert out.shape == (2, 9, 3, 2, 2) and expanded_length(3) == 9
    assert values(out) == [0, 1, 1, 1, 1, 2, 2, 2, 2]
    assert out[1, :, 0, 0, 0].tolist() == [10, 11, 11, 11, 11, 12, 12, 12, 12]


def test_blend_interpolates_linearly_between_consecutive_keyframes():
    out = expand_keyframes(keyframes(3), "blend")
    assert out.shape == (2, 9, 3, 2, 2)
    assert values(out) == pytest.approx([0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2])
    out2 = expand_keyframes(keyframes(3), "blend", factor=2)
    assert values(out2) == pytest.approx([0, 0.5, 1, 1.5, 2])


@pytest.mark.parametrize("mode", ["repeat", "blend"])
def test_keyframe_i_is_frame_4i_exactly(mode):
    k = torch.rand(1, 4, 3, 5, 6)
    out = expand_keyframes(k, mode)
    assert out.shape[1] == 13
    assert torch.equal(out[:, ::4], k)


def test_one_keyframe_stays_one_frame_and_bad_input_is_refused():
    k = keyframes(1)
    assert expand_keyframes(k, "blend").shape[1] == 1 and expand_keyframes(k, "repeat").shape[1] == 1
    with pytest.raises(ValueError, match="mode"):
        expand_keyframes(k, "interpolate")
    with pytest.raises(ValueError, match="NTCHW"):
        expand_keyframes(k[0], "blend")


@pytest.mark.parametrize("mode", ["repeat", "blend"])
def test_decode_batch_refuses_cv_vae_frames_with_a_taehv_file_as_the_cli_does(comfy, mode):
    # TAEHV already decodes 4 frames per latent frame: filling its output as CV-VAE keyframes
    # turned 2 latent frames (5 frames) into 17 meaningless ones.
    import os

    from safetensors.torch import save_file

    import graphs
    from reference_taehv import random_state_dict

    name = "taew2_1-keyframes.safetensors"
    path = os.path.join(comfy.base, "models", "vae_approx", name)
    save_file(random_state_dict("wan2_1", seed=3), path)
    try:
        decode = graphs.decode()
        decode["inputs"].update(latent_scale=0.0, cv_vae_frames=mode)
        graph = {"1": graphs.loader(name=name), "2": graphs.latent_clip(frames=2, channels=16, video_5d=True),
                 "3": decode, "4": graphs.save_tensor("keyframes_taehv", images="3")}
        run = comfy.run(graph)
    finally:
        os.remove(path)
    assert not run.succeeded
    assert re.search(rf"cv_vae_frames {mode}: TAEHV .* already decodes 4 frames per latent frame; cv_vae_frames is "
                     r"for CV-VAE latents read by a one-frame-per-latent decoder \(TAESDV, image TAESD\)",
                     run.error_text()), run.error_text()
