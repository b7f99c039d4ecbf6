"""Hostile checkpoint files: refused from their declared sizes before any tensor data is read
(peak memory of the CLI stays near the file's real size), and no file byte in any message."""
import io
import json
import os
import re
import struct
import subprocess
import sys
import zipfile

import torch
from safetensors.torch import save_file

from helpers import ROOT

DECLARED_FLOATS = 400_000_000  # 1.5 GiB of float32 zeros, DEFLATE-compressed to ~1.5 MB


def zip_bomb_checkpoint(path):
    """A torch.save zip whose one tensor entry is DEFLATE-compressed zeros declaring 1.5 GiB."""
    marker = 123457
    buffer = io.BytesIO()
    torch.save({"decoder.1.weight": torch.zeros(marker)}, buffer)
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    with zipfile.ZipFile(path, "w") as out:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename.endswith("data.pkl"):
                data = data.replace(struct.pack("<i", marker), struct.pack("<i", DECLARED_FLOATS))
            if info.filename.endswith("/data/0"):
                entry = zipfile.ZipInfo(info.filename)
                entry.compress_type = zipfile.ZIP_DEFLATED
                with out.open(entry, "w", force_zip64=True) as f:
                    zeros = bytes(64 << 20)
                    for _ in range(DECLARED_FLOATS * 4 // len(zeros)):
                        f.write(zeros)
                    f.write(bytes(DECLARED_FLOATS * 4 % len(zeros)))
            else:
                out.writestr(info, data)


def cli_peak_rss(*args):
    """Run the CLI in a child; returns (its result, the child's peak RSS in bytes)."""
    code = ("import json, resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
            "print(json.dumps([r.returncode, r.stderr, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024]))")
    out = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "taesdv_core", *map(str, args)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_zip_bomb_checkpoint_is_refused_without_allocating_its_declared_size(tmp_path, checkpoint_path):
    bomb = tmp_path / "taesdv_bomb.pth"
    zip_bomb_checkpoint(bomb)
    assert os.path.getsize(bomb) < 4 << 20
    latents = tmp_path / "latents.safetensors"
    save_file({"latents": torch.zeros(1, 2, 4, 4, 4)}, latents)
    # the same CLI run with a real checkpoint: the baseline of a decode
    ok_code, _, baseline = cli_peak_rss("decode", latents, "-w", checkpoint_path, "-o", tmp_path / "ok.safetensors")
    assert ok_code == 0
    code, stderr, peak = cli_peak_rss("decode", latents, "-w", bomb, "-o", tmp_path / "out.safetensors")
    assert code == 2
    assert "'taesdv_bomb.pth' was refused: its zip archive declares 1526 MiB of data" in stderr, stderr
    print(f"zip bomb: peak RSS {peak / 2**20:.0f} MiB (a normal decode: {baseline / 2**20:.0f} MiB)")
    assert peak < baseline + (64 << 20)


def test_a_safetensors_header_declaring_gigabytes_or_pointing_outside_the_file_is_refused(tmp_path):
    from taesdv_core import CheckpointError, read_state_dict
    import pytest

    def write(name, header, data=b""):
        body = json.dumps(header).encode()
        path = tmp_path / name
        path.write_bytes(struct.pack("<Q", len(body)) + body + data)
        return path

    huge = write("huge.safetensors", {"decoder.1.weight": {"dtype": "F32", "shape": [DECLARED_FLOATS],
                                                           "data_offsets": [0, DECLARED_FLOATS * 4]}})
    with pytest.raises(CheckpointError, match="tensor 'decoder.1.weight' points outside the file"):
        read_state_dict(str(huge))
    many = {f"t{i}": {"dtype": "F32", "shape": [1 << 26], "data_offsets": [0, 1 << 28]} for i in range(5)}
    path = tmp_path / "many.safetensors"
    body = json.dumps(many).encode()
    with open(path, "wb") as f:  # a sparse file: 256 MiB of data, five tensors all pointing at it
        f.write(struct.pack("<Q", len(body)) + body)
        f.truncate(8 + len(body) + (1 << 28))
    with pytest.raises(CheckpointError, match="its header declares 1280 MiB of data"):
        read_state_dict(str(path))


def test_a_text_file_behind_a_link_leaks_no_byte_in_the_message(tmp_path):
    from taesdv_core import CheckpointError, read_state_dict
    import pytest

    secret = tmp_path / "secret.txt"
    secret.write_text("Zsecret-password\n")
    for name in ("taesdv_link.pth", "taesdv_link.safetensors"):
        link = tmp_path / name
        os.symlink(secret, link)
        with pytest.raises(CheckpointError) as refused:
            read_state_dict(str(link))
        message = str(refused.value)
        # the first byte, 'Z', neither as text nor as its number (torch says "Unsupported operand 90")
        assert not re.search(r"'Z'|\b90\b|secret", message), message
