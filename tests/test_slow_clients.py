"""A websocket client that connects and never reads, on the real server (issue 13, defect 10).

ComfyUI 0.3.75 sends every websocket message from one loop, one client after another, and
awaits each send (aiohttp waits for the socket to drain once 64 KiB are pending): a client that
stops reading stalls that loop, and every later message waits in PromptServer.messages, an
unbounded queue. The host's loop is not the pack's to fix; the pack's part is that its previews
(the largest messages) do not pile up there: while more than live_preview.MAX_BACKLOG messages
wait, previews are skipped and counted.

The stalled client is a raw socket with a tiny receive buffer that does the websocket handshake
and then never reads. First a test node sends it 256 KiB messages until the send loop stalls (on
loopback the kernel buffers several MB, which previews would take minutes of CPU decoding to
fill; over a real network a client that stops reading stalls the loop far sooner). Then a
previewing prompt is queued under its client id, so its messages and previews are sent to it,
and a second, reading client queues its own previewing prompt behind it.
Numbers go to test-artifacts/stalled_client.json.
"""
import base64
import json
import os
import re
import socket
import threading
import time

import graphs
from helpers import ROOT, assert_still_serving

STEPS = 16
# Generous bounds for a loaded 2-core machine: measured runs take ~10-40 s and grow RSS by a few MB.
RUN_SECONDS = 300
RSS_GROWTH = 200 * 2**20
ARTIFACTS = os.path.join(ROOT, "test-artifacts")


class NeverReadingClient:
    """A websocket client that connects with `client_id` and never reads a byte after the handshake."""

    def __init__(self, port: int, client_id: str):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /ws?clientId={client_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                           f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while not head.endswith(b"\r\n\r\n"):  # the response head only, byte by byte: no frame is read
            byte = self.sock.recv(1)
            assert byte, f"the server closed the connection during the handshake: {head!r}"
            head += byte
        assert head.startswith(b"HTTP/1.1 101"), head

    def close(self):
        self.sock.close()  # unread data pending: the kernel resets the connection


class RssSampler:
    """The server process's VmRSS, read from /proc every 0.2 s in a thread."""

    def __init__(self, pid: int):
        self.pid, self.samples, self._stop = pid, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))

    def _run(self):
        while not self._stop.is_set():
            self.samples.append(self.rss())
            self._stop.wait(0.2)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join()


def queue_prompt(host, graph, client_id):
    status, body = host.post_json("/prompt", {"prompt": graph, "client_id": client_id})
    assert status == 200, body
    return body["prompt_id"]


def wait_for_history(host, prompt_id, deadline):
    while time.time() < deadline:
        entry = host.get_json(f"/history/{prompt_id}").get(prompt_id)
        if entry is not None:
            return entry
        time.sleep(0.25)
    raise TimeoutError(f"prompt {prompt_id} did not finish within {RUN_SECONDS}s")


def outgoing_queue(host, max_backlog=-1):
    graph = {"1": {"class_type": "TAESDVTest_OutgoingQueue", "inputs": {"max_backlog": max_backlog}}}
    prompt_id = queue_prompt(host, graph, "queue-report")
    entry = wait_for_history(host, prompt_id, time.time() + RUN_SECONDS)
    return entry["outputs"]["1"]["queue"][0]


def sampling(frames=8, steps=STEPS):
    # 8 frames of 64 px, every step previewed: ~0.13 MB waiting per previewed step (the clip's JPEG
    # sheet in base64, and ComfyUI's preview image as raw pixels), a few hundred ms of decoding
    return graphs.sampling_graph(frames=frames, size=64, steps=steps, preview={"budget_percent": 100})


def stalled_scenario(host, label):
    """A never-reading client gets a previewing prompt's messages while a reading client samples.
    Returns the measurements; both clients are gone after."""
    stalled_id, reader_id = f"stalled-{label}", f"reader-{label}"
    log_before = len(host.log())
    reader, _ = host.connect(reader_id)
    reader.settimeout(None)  # it waits as long as the stalled loop holds its messages back
    finished_at = {}

    def read_all():
        try:
            while True:
                frame = reader.recv()
                if isinstance(frame, str):
                    msg = json.loads(frame)
                    if msg["type"] == "execution_success" and msg["data"].get("prompt_id") == finished_at.get("wanted"):
                        finished_at["ws"] = time.time()
                        return
        except Exception:
            return

    stalled = NeverReadingClient(host.port, stalled_id)
    fill = queue_prompt(host, {"1": {"class_type": "TAESDVTest_FillClientPipe", "inputs": {"max_mb": 256}}}, stalled_id)
    pipe = wait_for_history(host, fill, time.time() + RUN_SECONDS)["outputs"]["1"]["pipe"][0]
    assert pipe["stalled"], pipe  # the send loop now waits on the stalled client
    with RssSampler(host.pid) as rss:
        time.sleep(0.6)
        before = rss.samples[-1]
        started = time.time()
        stalled_prompt = queue_prompt(host, sampling(), stalled_id)  # its messages and previews go to the stalled client
        reader_prompt = queue_prompt(host, sampling(frames=8, steps=8), reader_id)
        finished_at["wanted"] = reader_prompt
        reading = threading.Thread(target=read_all, daemon=True)
        reading.start()
        stalled_run = wait_for_history(host, stalled_prompt, started + RUN_SECONDS)
        stalled_done = time.time()
        reader_run = wait_for_history(host, reader_prompt, started + RUN_SECONDS)
        reader_done = time.time()
        waiting = outgoing_queue(host)
        peak = max(rss.samples)
        reader_got_it_while_stalled = "ws" in finished_at
        stalled.close()
        closed = time.time()
        reading.join(RUN_SECONDS)
        time.sleep(0.6)
        after = rss.samples[-1]
    reader.close()
    log = host.log()[log_before:]
    summary = re.findall(r"TAESDV previews of this run: (\d+) sent, (\d+) skipped", log)
    return {
        "label": label, "steps": STEPS, "max_backlog": waiting["max_backlog"],
        "bytes_sent_to_stall_the_loop": pipe["bytes_sent"],
        "stalled_prompt": stalled_run["status"]["status_str"], "reader_prompt": reader_run["status"]["status_str"],
        "stalled_prompt_seconds": round(stalled_done - started, 2), "reader_prompt_seconds": round(reader_done - started, 2),
        "reader_saw_its_result_while_the_stalled_client_was_connected": reader_got_it_while_stalled,
        "reader_saw_its_result_seconds_after_the_stalled_client_closed":
            round(finished_at["ws"] - closed, 2) if "ws" in finished_at and not reader_got_it_while_stalled else None,
        "queue_after_runs": waiting,
        "previews_sent_skipped_per_run": [[int(a), int(b)] for a, b in summary],
        "skip_warning_logged": "TAESDV previews skipped:" in log,
        "rss_before_mb": round(before / 2**20, 1), "rss_peak_mb": round(peak / 2**20, 1),
        "rss_after_mb": round(after / 2**20, 1),
    }


def save(result):
    os.makedirs(ARTIFACTS, exist_ok=True)
    path = os.path.join(ARTIFACTS, "stalled_client.json")
    results = {}
    if os.path.exists(path):
        with open(path) as f:
            results = json.load(f)
    results[result["label"]] = result
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    print(json.dumps(result, indent=1))


def test_a_client_that_never_reads_does_not_stop_runs_or_grow_memory_with_previews(comfy_alone):
    host = comfy_alone
    assert host.run(sampling(steps=2)).succeeded  # warm-up: models, caches, the preview decoder
    result = stalled_scenario(host, "with_skip")
    save(result)
    assert result["stalled_prompt"] == result["reader_prompt"] == "success"  # both ran to the end
    assert result["skip_warning_logged"]
    sent, skipped = result["previews_sent_skipped_per_run"][0]
    assert skipped > 0 and sent + skipped == STEPS  # every step previewed or counted as skipped
    previews_waiting = result["queue_after_runs"]["per_event"].get("taesdv.preview", {"messages": 0})["messages"]
    assert previews_waiting <= result["max_backlog"]  # previews never join a queue that is backed up
    assert (result["rss_peak_mb"] - result["rss_before_mb"]) * 2**20 < RSS_GROWTH
    # Once the stalled client is gone, the host's loop drains and the reader gets its messages.
    assert result["reader_saw_its_result_seconds_after_the_stalled_client_closed"] is not None
    assert_still_serving(host)


def test_without_the_skip_previews_pile_up_in_the_outgoing_queue(comfy_alone):
    # The comparison: the pack's backlog limit lifted, the same scenario. Previews then wait in the
    # queue for as long as the client does not read, one per step.
    host = comfy_alone
    pack_limit = outgoing_queue(host)["max_backlog"]
    limit = outgoing_queue(host, max_backlog=2**31 - 1)["max_backlog"]
    try:
        result = stalled_scenario(host, "without_skip")
    finally:
        outgoing_queue(host, max_backlog=pack_limit)
    save(result)
    assert limit == 2**31 - 1 and result["previews_sent_skipped_per_run"] == []
    # every step's preview of both prompts (the stalled client's STEPS, the reader's 8) waits there
    assert result["queue_after_runs"]["per_event"]["taesdv.preview"]["messages"] == STEPS + 8
