"""Small builders of API-format ComfyUI graphs for the tests."""


def loader(dtype="auto", name="taesdv.pth"):
    return {"class_type": "TAESDVLoader", "inputs": {"model_name": name, "dtype": dtype}}


def latent_clip(frames=8, height=4, width=4, seed=0, start=0, count=-1, channels=4, video_5d=False, fill="random"):
    return {"class_type": "TAESDVTest_LatentClip",
            "inputs": {"frames": frames, "height": height, "width": width, "channels": channels, "seed": seed,
                       "start": start, "count": count, "video_5d": video_5d, "fill": fill}}


def decode(model="1", samples="2", chunk=0):
    return {"class_type": "TAESDVDecode",
            "inputs": {"taesdv": [model, 0], "samples": [samples, 0], "chunk_frames": chunk, "latent_scale": 0.18215}}


def stream(model="1", samples="2", name="s", reset=False, chunk=0):
    return {"class_type": "TAESDVStreamingDecode",
            "inputs": {"taesdv": [model, 0], "samples": [samples, 0], "stream_name": name, "reset": reset,
                       "chunk_frames": chunk, "latent_scale": 0.18215}}


def encode(model="1", pixels="3", chunk=0):
    return {"class_type": "TAESDVEncode",
            "inputs": {"taesdv": [model, 0], "pixels": [pixels, 0], "chunk_frames": chunk, "latent_scale": 0.18215}}


def save_tensor(name, images=None, samples=None):
    inputs = {"name": name}
    if images:
        inputs["images"] = [images, 0]
    if samples:
        inputs["samples"] = [samples, 0]
    return {"class_type": "TAESDVTest_SaveTensor", "inputs": inputs}


def save_image(images, prefix="taesdv"):
    return {"class_type": "SaveImage", "inputs": {"images": [images, 0], "filename_prefix": prefix}}


def decode_graph(save_name, **clip):
    return {"1": loader(), "2": latent_clip(**clip), "3": decode(), "4": save_tensor(save_name, images="3")}
