"""Puts taesdv.pth into models/vae_approx: downloads it, verifies its git blob id, or explains.

    python scripts/fetch_weights.py MODELS_DIR [--demo]

Offline, the download fails with a message saying where to get the file by hand. --demo writes
random weights of the official layout (taesdv-random-demo.pth) so the graphs can run without
the real file; their pictures are noise.
"""
import os
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from taesdv_core.checkpoint import OFFICIAL_BLOB_ID, OFFICIAL_URL, git_blob_id  # noqa: E402


def main() -> int:
    folder = sys.argv[1]
    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, "taesdv.pth")
    if os.path.exists(target):
        blob = git_blob_id(target)
        note = "the official file" if blob == OFFICIAL_BLOB_ID else f"blob id {blob[:8]}, not the newest official file"
        print(f"fetch_weights: {target} present ({note})")
        return 0
    try:
        tmp = target + ".part"
        with urllib.request.urlopen(OFFICIAL_URL, timeout=20) as r, open(tmp, "wb") as f:
            f.write(r.read())
        blob = git_blob_id(tmp)
        if blob != OFFICIAL_BLOB_ID:
            os.remove(tmp)
            print(f"fetch_weights: the download has blob id {blob}, expected {OFFICIAL_BLOB_ID}; not installed", file=sys.stderr)
            return 1
        os.replace(tmp, target)
        print(f"fetch_weights: downloaded and verified {target}")
        return 0
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        print(f"fetch_weights: could not download taesdv.pth ({e}).\n"
              f"  Download {OFFICIAL_URL} on a machine with internet and copy it to {target}\n"
              f"  (verify: git hash-object taesdv.pth prints {OFFICIAL_BLOB_ID}).", file=sys.stderr)
    if "--demo" in sys.argv:
        import torch

        from taesdv_core import TAESDV

        demo = os.path.join(folder, "taesdv-random-demo.pth")
        torch.manual_seed(0)
        torch.save(TAESDV().state_dict(), demo)
        print(f"fetch_weights: wrote {demo} (random weights of the official layout: the plumbing works, pictures are noise)")
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
