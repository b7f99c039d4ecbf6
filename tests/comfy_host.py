"""Starts the real, unmodified ComfyUI (set up by scripts/setup-host.sh) on loopback: the host that
scripts/test.sh names (TAESDV_TEST_HOST, TAESDV_TEST_COMFYUI), by default the primary one, 0.33.0.

The server gets its own base directory (custom_nodes with this pack linked in, models, input,
output, temp, user) and its log goes to a file the tests read.
"""
from __future__ import annotations

import json
import os
import shlex
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import websocket

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST_VERSION = os.environ.get("TAESDV_TEST_HOST", "0.33.0")
COMFYUI = os.environ.get("TAESDV_TEST_COMFYUI", os.path.join(ROOT, ".host", f"comfyui-{HOST_VERSION}", "ComfyUI"))
# label=--front-end-root pairs from scripts/test.sh, the host's own frontend first ('' = the venv's).
FRONTENDS = [tuple(pair.split("=", 1)) for pair in os.environ.get("TAESDV_TEST_FRONTENDS", "").split(";") if "=" in pair]
# An older host is served its own pinned frontend (the venv holds the primary host's).
HOST_FRONTEND_ARGS = ["--front-end-root", FRONTENDS[0][1]] if FRONTENDS and FRONTENDS[0][1] else []
PACK_NAME = "ComfyUI-TAESDV"
# "cuda": start the server without --cpu, so ComfyUI uses the GPU (scripts/test-gpu.sh); default cpu.
DEVICE = os.environ.get("TAESDV_TEST_DEVICE", "cpu")
# More server arguments, e.g. "--front-end-root DIR" where the frontend package is not installed.
SERVER_ARGS = shlex.split(os.environ.get("TAESDV_TEST_SERVER_ARGS", ""))


PACK_SOURCES = ("__init__.py", "nodes", "taesdv_core", "web")  # what ComfyUI loads from the pack


def is_pack_file(path: str, pack_root: str = ROOT) -> bool:
    """A file of the pack itself (through any link to it), not of the host or the venv that may live
    inside the checkout (.host/, .venv/), whatever the checkout's folder is called."""
    relative = os.path.relpath(os.path.realpath(path), os.path.realpath(pack_root))
    return relative.split(os.sep)[0] in PACK_SOURCES


def pack_load_problems(log: str, pack_root: str = ROOT, pack_name: str = PACK_NAME) -> list[str]:
    """What went wrong loading this pack, from a ComfyUI server log: a missing or failed entry for
    custom_nodes/<pack_name> in the import times, ComfyUI's own messages about that module, and
    tracebacks with a frame in the pack's files. Other modules' import errors (the host's optional
    comfy_extras without spandrel, kornia, torchaudio) are not the pack's."""
    problems = []
    module = re.escape(os.sep + os.path.join("custom_nodes", pack_name))
    if not re.search(rf"^\s*[\d.]+ seconds: .*{module}$", log, re.M):
        failed = re.search(rf"^.*seconds \(IMPORT FAILED\): .*{module}$", log, re.M)
        problems.append(failed.group(0).strip() if failed else f"no import-times line for custom_nodes/{pack_name}")
    about_module = re.compile(rf"(Cannot import|Error while calling comfy_entrypoint in|Skip) (\S*{module})[ :]")
    problems += [line for line in log.splitlines() if about_module.search(line)]
    for block in log.split("Traceback (most recent call last):")[1:]:
        frames = re.findall(r'^\s*File "([^"]+)", line \d+', block.split("\n\n")[0], re.M)
        if any(is_pack_file(f, pack_root) for f in frames if os.path.isabs(f)):
            problems.append("Traceback (most recent call last):" + block.split("\n\n")[0])
    return problems


# ComfyUI 0.33's logger starts every line with a coloured level tag, also in a file.
LEVEL_TAG = re.compile(r"^\x1b\[[0-9;]*m\[(?:DEBUG|INFO|WARNING|ERROR|CRITICAL)\]\x1b\[0m ?", re.M)


def plain_log(text: str) -> str:
    """A server log as 0.3.75 writes it: without 0.33's level tags at the line starts."""
    return LEVEL_TAG.sub("", text)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyHost:
    def __init__(self, base: str, extra_packs: dict[str, str] | None = None, extra_args: list[str] | None = None,
                 env: dict[str, str] | None = None):
        self.base = base
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(base, "server.log")
        self.proc: subprocess.Popen | None = None
        self.extra_packs = extra_packs or {}
        self.extra_args = extra_args or []
        self.env = env or {}
        for d in ("custom_nodes", "models/vae_approx", "input", "output", "temp", "user/default"):
            os.makedirs(os.path.join(base, d), exist_ok=True)
        links = {PACK_NAME: ROOT, **self.extra_packs}
        for name, target in links.items():
            link = os.path.join(base, "custom_nodes", name)
            if not os.path.lexists(link):
                os.symlink(target, link)
        settings = os.path.join(base, "user", "default", "comfy.settings.json")
        if not os.path.exists(settings):
            with open(settings, "w") as f:
                json.dump({"Comfy.TutorialCompleted": True}, f)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, timeout: float = 120) -> "ComfyHost":
        if not os.path.isfile(os.path.join(COMFYUI, "main.py")):
            raise RuntimeError(f"no ComfyUI at {COMFYUI}: run `bash scripts/setup-host.sh --test` first")
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1", **self.env)
        cmd = [sys.executable, "main.py", *(["--cpu"] if DEVICE == "cpu" else []), "--listen", "127.0.0.1", "--port", str(self.port),
               "--base-directory", self.base, "--disable-api-nodes", "--database-url", "sqlite:///:memory:",
               *HOST_FRONTEND_ARGS, *SERVER_ARGS, *self.extra_args]
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=COMFYUI, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                with urllib.request.urlopen(self.url + "/object_info/TAESDVLoader", timeout=5) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.3)
        raise RuntimeError(f"ComfyUI did not answer within {timeout}s:\n{self.log()[-4000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return plain_log(f.read())

    @property
    def pid(self) -> int:
        return self.proc.pid

    # -- HTTP ------------------------------------------------------------------------------
    def get_json(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            return json.loads(r.read())

    def get_bytes(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            return r.read()

    def post_json(self, path: str, body) -> tuple[int, dict]:
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                text = r.read()
                return r.status, (json.loads(text) if text else {})
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def interrupt(self) -> None:
        self.post_json("/interrupt", {})

    # -- prompts ---------------------------------------------------------------------------
    def connect(self, client_id: str | None = None, supports_preview_metadata: bool = True):
        client_id = client_id or uuid.uuid4().hex
        ws = websocket.create_connection(f"ws://127.0.0.1:{self.port}/ws?clientId={client_id}", timeout=120)
        ws.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": supports_preview_metadata}}))
        return ws, client_id

    def run(self, graph: dict, timeout: float = 300, on_message=None, ws_and_id=None,
            extra_data: dict | None = None) -> "PromptRun":
        """Queue an API-format graph (with the frontend's extra_data, e.g. {"preview_method": "none"})
        and collect every websocket message until it finishes."""
        ws, client_id = ws_and_id or self.connect()
        try:
            request = {"prompt": graph, "client_id": client_id}
            if extra_data is not None:
                request["extra_data"] = extra_data
            status, body = self.post_json("/prompt", request)
            if status != 200:
                return PromptRun(None, status, body, [], [], None)
            prompt_id = body["prompt_id"]
            messages, binaries = [], []
            deadline = time.time() + timeout
            while time.time() < deadline:
                ws.settimeout(max(1.0, deadline - time.time()))
                frame = ws.recv()
                if isinstance(frame, bytes):
                    binaries.append(frame)
                    if on_message:
                        on_message(frame)
                    continue
                msg = json.loads(frame)
                messages.append(msg)
                if on_message:
                    on_message(msg)
                data = msg.get("data", {})
                if data.get("prompt_id") != prompt_id:
                    continue
                if msg["type"] in ("execution_success", "execution_error", "execution_interrupted"):
                    break
            else:
                raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout}s")
            # The server sends execution_success before it writes /history: wait for it.
            history = None
            for _ in range(100):
                history = self.get_json(f"/history/{prompt_id}").get(prompt_id)
                if history is not None:
                    break
                time.sleep(0.05)
            return PromptRun(prompt_id, status, body, messages, binaries, history)
        finally:
            if ws_and_id is None:
                ws.close()


class PromptRun:
    def __init__(self, prompt_id, status, response, messages, binaries, history):
        self.prompt_id, self.status, self.response = prompt_id, status, response
        self.messages, self.binaries, self.history = messages, binaries, history

    def of_type(self, kind: str) -> list[dict]:
        return [m["data"] for m in self.messages if m["type"] == kind]

    @property
    def succeeded(self) -> bool:
        return bool(self.of_type("execution_success"))

    @property
    def error(self) -> dict | None:
        errors = self.of_type("execution_error")
        return errors[0] if errors else None

    def error_text(self) -> str:
        if self.status != 200:
            details = [f"{e.get('message')}: {e.get('details')}" for node in self.response.get("node_errors", {}).values()
                       for e in node.get("errors", [])]
            return "\n".join(details) or json.dumps(self.response)
        e = self.error
        return f"{e.get('exception_type')}: {e.get('exception_message')}" if e else ""

    def outputs(self, node_id: str) -> dict:
        return self.history["outputs"].get(node_id, {})
