"""Puts taesdv.pth into models/vae_approx: downloads it, verifies its git blob id, or explains.

    python scripts/fetch_weights.py MODELS_DIR

Offline, the download fails with a message saying where to get the file by hand, and that
`bash scripts/start.sh --demo-weights` (scripts/make_demo_assets.py) makes every example runnable
with random weights instead. TAESDV_WEIGHTS_URL replaces the download address (a mirror).
"""
import os
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from taesdv_core.checkpoint import OFFICIAL_BLOB_ID, OFFICIAL_URL, git_blob_id  # noqa: E402


def main() -> int:
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    folder = sys.argv[1]
    url = os.environ.get("TAESDV_WEIGHTS_URL", OFFICIAL_URL)
    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, "taesdv.pth")
    if os.path.exists(target):
        blob = git_blob_id(target)
        note = "the official file" if blob == OFFICIAL_BLOB_ID else f"blob id {blob[:8]}, not the newest official file"
        print(f"fetch_weights: {target} present ({note})")
        return 0
    try:
        tmp = target + ".part"
        with urllib.request.urlopen(url, timeout=20) as r, open(tmp, "wb") as f:
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
        print(f"fetch_weights: could not download taesdv.pth from {url} ({e}).\n"
              f"  Download {OFFICIAL_URL} on a machine with internet and copy it to {target}\n"
              f"  (verify: git hash-object taesdv.pth prints {OFFICIAL_BLOB_ID}).\n"
              f"  To try every example offline now: bash scripts/start.sh --demo-weights (random weights and a\n"
              f"  random demo checkpoint: the plumbing works, the pictures are noise).", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
