"""Start a real vLLM OpenAI-compatible server (tests, CPU benchmarks).

``VllmServer`` runs the command ``mmgvid serve`` would run
(``mmgvid_vllm.cli.vllm_server_command``): ``python -m vllm.entrypoints.openai.api_server``,
or, with ``--api-server-count N`` (N > 1) in ``extra_args``, vLLM's CLI ``serve`` (through
``python -m mmgvid_vllm.cli vllm-cli``), the only entry point that really starts N API-server
processes. It runs as a child process (in its own process group, so vLLM's engine-core, worker
and API-server processes are cleaned up with it), logs to a temporary file, waits for
``/health`` and stops cleanly. Use it as a context manager, typically from a module-scoped
pytest fixture::

    @pytest.fixture(scope="module")
    def server():
        with VllmServer(ensure_tiny_model(), env={"VLLM_PLUGINS": ""}) as srv:
            yield srv

    def test_x(server):
        result = stream_chat(server.url, chat_body(server.model, url))  # mmgvid_vllm.client
        assert result.usage["prompt_tokens"] > 0

Plugins: vLLM loads *every* installed ``vllm.general_plugins`` entry point
(this package's ``mmgvid`` included) unless ``VLLM_PLUGINS`` is set. Pass
``env={"VLLM_PLUGINS": ""}`` for a plain vLLM server and
``env={"VLLM_PLUGINS": "mmgvid", "MMGVID_RETENTION": "0.25"}`` for pruning.
``env`` values of ``None`` remove inherited variables.

``CPU_DEFAULT_ARGS`` are the flags the tiny model needs on a CPU-only machine (``mmgvid serve``'s);
they are used when ``extra_args`` is None. Flags in ``extra_args`` are passed
verbatim after ``--model/--host/--port``. ``api_server_pids()`` lists the processes vLLM
started as extra API servers (none with one API server: the launched process serves itself).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil
import requests

from mmgvid_vllm.cli import CPU_TINY_DEFAULTS, vllm_server_command

__all__ = ["CPU_DEFAULT_ARGS", "VllmServer", "ServerStartError", "free_port"]

# `mmgvid serve`'s defaults for the tiny model on a CPU (one list: tests and benchmarks serve vanilla
# vLLM with exactly these flags), but --host, which VllmServer passes itself.
CPU_DEFAULT_ARGS: tuple[str, ...] = (
    *(arg for flags, args in CPU_TINY_DEFAULTS if "--host" not in flags for arg in args),
    "--trust-request-mm-kwargs",
    "--uvicorn-log-level", "warning",
)


class ServerStartError(RuntimeError):
    """The server exited or did not become healthy in time; the message holds the log tail."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class VllmServer:
    """A vLLM API server subprocess on ``host:port`` serving ``model``.

    Attributes after ``start()``: ``url`` (``http://host:port``), ``base_url``
    (``.../v1``, for the ``openai`` client), ``model`` (the served name),
    ``log_path``, ``startup_seconds``, ``proc``.
    """

    def __init__(
        self,
        model: str | os.PathLike,
        extra_args: Sequence[str] | None = None,
        env: Mapping[str, str | None] | None = None,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        python: str = sys.executable,
        startup_timeout: float = 240.0,
        log_path: str | os.PathLike | None = None,
        keep_log: bool = False,
    ) -> None:
        self.model = str(model)
        self.extra_args = list(CPU_DEFAULT_ARGS if extra_args is None else extra_args)
        self.env_overrides = dict(env or {})
        self.host = host
        self.port = port
        self.python = python
        self.startup_timeout = startup_timeout
        self.log_path = Path(log_path) if log_path else None
        self.keep_log = keep_log or log_path is not None
        self.proc: subprocess.Popen | None = None
        self.startup_seconds: float | None = None
        self._log_file = None

    # -- lifecycle ---------------------------------------------------------
    @property
    def command(self) -> list[str]:
        args = ["--host", self.host, "--port", str(self.port), *self.extra_args]
        return vllm_server_command(self.model, args, python=self.python)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def start(self) -> VllmServer:
        if self.proc is not None:
            raise RuntimeError("server already started")
        if self.port is None:
            self.port = free_port(self.host)
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="vllm-server-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        for key, value in self.env_overrides.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = str(value)
        self._log_file = open(self.log_path, "ab", buffering=0)
        self._log_file.write(("$ " + " ".join(self.command) + "\n").encode())
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # own process group: stop() reaches engine/worker children
        )
        try:
            self._wait_healthy(t0)
        except BaseException:
            self.stop(failed=True)
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def _wait_healthy(self, t0: float) -> None:
        deadline = t0 + self.startup_timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                raise ServerStartError(
                    f"vLLM server exited with code {code} during startup; log {self.log_path}:\n"
                    + self.log_tail()
                )
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"vLLM server not healthy after {self.startup_timeout:.0f}s; log {self.log_path}:\n"
                    + self.log_tail()
                )
            time.sleep(0.5)

    def stop(self, timeout: float = 30.0, *, failed: bool = False) -> None:
        """SIGTERM the server's process group, then SIGKILL what is left after ``timeout``."""
        proc, self.proc = self.proc, None
        if proc is not None:
            try:
                pgid = os.getpgid(proc.pid)
            except ProcessLookupError:
                pgid = None
            if proc.poll() is None and pgid is not None:
                os.killpg(pgid, signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    pass
            if pgid is not None:
                # Children (EngineCore, workers) may outlive the API process briefly.
                end = time.monotonic() + 10
                while time.monotonic() < end and _group_alive(pgid):
                    time.sleep(0.2)
                if _group_alive(pgid):
                    try:
                        os.killpg(pgid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            proc.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if not (failed or self.keep_log) and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> VllmServer:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop(failed=exc_type is not None)

    # -- helpers -----------------------------------------------------------
    def log_tail(self, lines: int = 80) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def api_server_pids(self) -> list[int]:
        """PIDs of the API-server processes vLLM's CLI started (titled ``VLLM::APIServer_<i>``)."""
        if self.proc is None:
            return []
        pids = []
        for child in psutil.Process(self.proc.pid).children(recursive=True):
            try:
                if " ".join(child.cmdline()).startswith("VLLM::APIServer"):
                    pids.append(child.pid)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return sorted(pids)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
