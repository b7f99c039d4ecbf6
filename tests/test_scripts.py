"""The set-up scripts as a user runs them: test.sh's arguments, fetch_weights.py offline."""
import os
import socket
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_test_sh_runs_only_the_test_files_it_is_given():
    r = subprocess.run(["bash", "scripts/test.sh", "--collect-only", "-q", "-p", "no:cacheprovider", "tests/test_scripts.py"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    collected = [line for line in r.stdout.splitlines() if "::" in line]
    assert collected and all(line.startswith("tests/test_scripts.py::") for line in collected), r.stdout


def test_fetch_weights_offline_says_where_to_get_the_file_and_that_demo_weights_exist(tmp_path):
    with socket.socket() as s:  # a loopback port nobody listens on: the download is refused
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/taesdv.pth"
    r = subprocess.run([sys.executable, "scripts/fetch_weights.py", str(tmp_path)], cwd=ROOT, capture_output=True,
                       text=True, timeout=60, env=dict(os.environ, TAESDV_WEIGHTS_URL=url))
    assert r.returncode == 1
    assert "could not download taesdv.pth" in r.stderr
    assert "https://github.com/madebyollin/taesdv/raw/main/taesdv.pth" in r.stderr
    assert "bash scripts/start.sh --demo-weights" in r.stderr
    assert not os.listdir(tmp_path)


def test_start_sh_refuses_a_busy_port_at_once_and_names_the_option_to_choose_another():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run(["bash", "scripts/start.sh", "--port", str(port)], cwd=ROOT, capture_output=True,
                           text=True, timeout=30)  # before any set-up: seconds, not minutes
    assert r.returncode == 2
    assert f"port {port} is already in use" in r.stderr and "--port" in r.stderr


def test_start_sh_help_lists_its_options():
    r = subprocess.run(["bash", "scripts/start.sh", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    assert all(option in r.stdout for option in ("--comfyui PATH", "--demo-weights", "--port"))
