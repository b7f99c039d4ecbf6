"""TAESDV Streaming Decode: a clip decoded piece by piece across queue runs, in constant memory."""
from __future__ import annotations

from comfy_api.latest import io

from .common import CATEGORY, TAESDVModel, chunk_input, frames_to_image, latent_scale_input, latent_to_clips


class TAESDVStreamingDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="TAESDVStreamingDecode",
            display_name="TAESDV Streaming Decode",
            category=CATEGORY,
            description="Decodes the next piece of an endless clip and remembers where it stopped, under a stream "
                        "name, until the next queue run: the pieces join without seams, and memory stays constant "
                        "for any length. Made for real-time video-to-video loops. The last 16 streams are kept.",
            inputs=[
                TAESDVModel.Input("taesdv", tooltip="From Load TAESDV; streams live with this loaded model."),
                io.Latent.Input("samples", tooltip="The next frames of the clip (frames as the batch)."),
                io.String.Input("stream_name", default="stream",
                                tooltip="Pieces with the same name continue one clip. Use different names for clips "
                                        "decoded side by side."),
                io.Boolean.Input("reset", default=False,
                                 tooltip="Start the stream afresh with this piece (a new clip)."),
                chunk_input(),
                latent_scale_input(),
            ],
            outputs=[
                io.Image.Output("images", tooltip="The frames of this piece, [frames, height, width, 3] in [0, 1]."),
                io.Int.Output("total_frames", tooltip="Frames decoded in this stream so far, this piece included."),
            ],
        )

    @classmethod
    def fingerprint_inputs(cls, **kwargs) -> float:
        return float("nan")  # stateful: every queue run continues the stream, even with identical inputs

    @classmethod
    def execute(cls, taesdv, samples: dict, stream_name: str, reset: bool, chunk_frames: int,
                latent_scale: float) -> io.NodeOutput:
        clips = latent_to_clips(samples, taesdv.decoder, latent_scale)
        frames, stream = taesdv.decode_stream(stream_name, clips, reset=reset, chunk_frames=chunk_frames or None)
        return io.NodeOutput(frames_to_image(frames), stream.frames_decoded)
