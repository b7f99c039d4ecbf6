"""Two checkouts' CPU decode times side by side: a refactor's before and after.

    git worktree add --detach /tmp/before <commit>
    OMP_NUM_THREADS=1 .venv/bin/python bench/checkouts.py /tmp/before . [rounds, default 5]

Each timing is a fresh process importing taesdv_core from one checkout; the two alternate
(A, B, A, B, ...) so another process's load falls on both alike. Rows: TAESDV (16 latent frames
of 32x32 -> 256 px) and TAEHV (Wan 2.1 layout, 13 latent frames of 30x52 -> 49 frames of
240x416), in fp32 and bf16, random weights of the official layouts scaled like trained ones,
loaded through each checkout's own loader. Prints medians and every run; one thread. Writes bench/results/checkouts.json.
"""
import json
import os
import statistics
import subprocess
import sys

TESTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")

CHILD = r'''
import sys, time, json, torch
sys.path.insert(0, sys.argv[1])
torch.set_num_threads(int(sys.argv[4]))
from taesdv_core.loading import load_autoencoder
from taesdv_core import decode
which, dtype = sys.argv[2], {"fp32": torch.float32, "bf16": torch.bfloat16}[sys.argv[3]]
import tempfile, os
from safetensors.torch import save_file
sys.path.insert(0, sys.argv[5])
g = torch.Generator().manual_seed(0)
if which == "taesdv":
    from reference_taesdv import official_layout_state_dict
    sd = official_layout_state_dict()
    name, latents = "taesdv.safetensors", torch.randn(1, 16, 4, 32, 32, generator=g)
else:
    from reference_taehv import random_state_dict
    sd = random_state_dict("wan2_1")
    name, latents = "taew2_1.safetensors", torch.randn(1, 13, 16, 30, 52, generator=g)
sd = {k: (torch.randn(v.shape, generator=g) * ((1.0 / (v.shape[1] * 9)) ** 0.5 if v.ndim == 4 else 0.05)).contiguous() for k, v in sd.items()}
with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, name)
    save_file(sd, path)
    decoder = load_autoencoder(path).decoder.to(dtype)
with torch.inference_mode():
    decode(decoder, latents[:, :2].to(dtype))
    t0 = time.perf_counter(); out = decode(decoder, latents.to(dtype)); t = time.perf_counter() - t0
print(json.dumps({"s": t, "shape": list(out.shape)}))
'''

def run(root, which, dtype, threads=1):
    r = subprocess.run([sys.executable, "-c", CHILD, root, which, dtype, str(threads), TESTS], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])["s"]

a, b = sys.argv[1], sys.argv[2]
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
rows = []
for which in ("taesdv", "taehv"):
    for dtype in ("fp32", "bf16"):
        ta, tb = [], []
        for _ in range(rounds):
            ta.append(run(a, which, dtype))
            tb.append(run(b, which, dtype))
        ma, mb = statistics.median(ta), statistics.median(tb)
        rows.append({"model": which, "dtype": dtype, "before_s": ta, "after_s": tb, "median_ratio": mb / ma})
        print(f"{which:7s} {dtype:5s} before {ma:7.3f} s  after {mb:7.3f} s  after/before {mb/ma:5.3f}   "
              f"(before {[round(x,3) for x in ta]}, after {[round(x,3) for x in tb]})", flush=True)
with open(os.path.join(os.path.dirname(TESTS), "bench", "results", "checkouts.json"), "w") as f:
    json.dump({"before": os.path.abspath(a), "after": os.path.abspath(b), "rows": rows}, f, indent=1)
