"""Running the emulator: in a background thread of the current process (tests), or as a child
process (demo, benchmarks)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import IO, Any

import uvicorn

from .app import create_app
from .config import ADMIN_TOKEN_ENV, STATE_FILE_ENV, EmulatorConfig
from .state import EmulatorState
from .tls import TlsFiles, make_certificate
from .tokens import TokenRegistry

LISTENING_RE = re.compile(r"listening on (https?://\S+)")
CA_BUNDLE_RE = re.compile(r"CA bundle: (\S+)")


class UvicornServer(uvicorn.Server):
    """uvicorn's server, telling when it listens, and exiting quietly on SIGINT/SIGTERM.

    uvicorn re-raises the signal that stopped it once it has shut down, which turns a clean stop
    into a ``KeyboardInterrupt`` or a death by SIGTERM; this server does not.

    :param on_started: called with the bound sockets once the server accepts connections.
    :param handle_signals: install the signal handlers (only possible in the main thread).
    """

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        on_started: Callable[[list[socket.socket]], None] | None = None,
        handle_signals: bool = False,
    ) -> None:
        super().__init__(config)
        self._on_started = on_started
        self._handle_signals = handle_signals
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    def request_exit(self) -> None:
        """Ask the server to stop, from any thread, without waiting for its next tick."""
        self.should_exit = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(wake.set)

    async def main_loop(self) -> None:
        """uvicorn's ticking loop, which :meth:`request_exit` can wake at once."""
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864000
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.1)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start serving, then report it."""
        await super().startup(sockets)
        if self.started and self._on_started is not None:
            self._on_started([s for server in self.servers for s in server.sockets])

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Shut down, closing idle keep-alive connections at once.

        A graceful TLS close waits for the client's close_notify, which an idle pooled connection
        never sends: without this, stopping would wait for the graceful-shutdown timeout.
        """
        for connection in list(self.server_state.connections):
            cycle = getattr(connection, "cycle", None)
            transport = getattr(connection, "transport", None)
            if transport is not None and (cycle is None or cycle.response_complete):
                transport.abort()
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Stop gracefully on SIGINT/SIGTERM, without re-raising them afterwards."""
        if not self._handle_signals or threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0 for any free port), reusable right after a stop."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=2048)


def base_url(host: str, port: int, tls: bool) -> str:
    """``http(s)://host:port`` (IPv6 hosts in brackets; a wildcard host as the loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}"


def uvicorn_config(
    app: Any, *, tls: TlsFiles | None, access_log: bool, log_level: str, log_config: Any = None
) -> uvicorn.Config:
    """The uvicorn settings the emulator runs with (``log_config=None`` leaves logging alone)."""
    kwargs: dict[str, Any] = {"log_config": log_config}
    if tls is not None:
        kwargs.update(ssl_certfile=str(tls.cert), ssl_keyfile=str(tls.key))
    return uvicorn.Config(
        app,
        lifespan="off",
        log_level=log_level,
        access_log=access_log,
        timeout_graceful_shutdown=1,
        # Longer than any client's poll interval (at least 5 s): otherwise an idle keep-alive
        # connection may be closed just as a client reuses it, which real services do not do.
        timeout_keep_alive=75,
        proxy_headers=False,
        server_header=False,
        **kwargs,
    )


class _Started:
    """``with`` starts on entry and stops on exit."""

    def start(self) -> Any:
        raise NotImplementedError

    def stop(self) -> Any:
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class EmulatorServer(_Started):
    """The emulator in a background thread of this process.

    >>> with EmulatorServer(EmulatorConfig(time_scale=1000)) as server:  # doctest: +SKIP
    ...     requests.get(f"{server.url}/_emulator/state").json()

    :param config: the knobs.
    :param host: interface to listen on.
    :param port: port, 0 for any free one (see :attr:`port` once started).
    :param tls: serve https with a certificate made on the spot (see :attr:`ca_bundle`).
    :param tls_files: serve https with these files instead.
    :param access_log: log every request (uvicorn's access log).
    :raises StateFileError: if ``config.state_file`` exists but cannot be read or understood.
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = False,
        *,
        tls_files: TlsFiles | None = None,
        access_log: bool = False,
    ) -> None:
        self.config = config or EmulatorConfig()
        self.host = host
        self.port = port
        self.access_log = access_log
        self.tls_files = tls_files
        if tls_files is None and tls:
            self.tls_files = make_certificate(_cert_hosts(host))
            # Made for this server: removed with it (not at stop, which restart() follows).
            weakref.finalize(self, shutil.rmtree, self.tls_files.ca_bundle.parent, ignore_errors=True)
        self.state = EmulatorState(self.config, listen_host=host)
        self.app = create_app(state=self.state)
        self._server: UvicornServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def tls(self) -> bool:
        """Whether it serves https."""
        return self.tls_files is not None

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321`` (the real port once started)."""
        return base_url(self.host, self.port, self.tls)

    @property
    def ca_bundle(self) -> str | None:
        """The CA file to trust when serving https, else ``None``."""
        return str(self.tls_files.ca_bundle) if self.tls_files is not None else None

    @property
    def running(self) -> bool:
        """Whether the server thread is up."""
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 10.0) -> EmulatorServer:
        """Bind, start serving, and return once connections are accepted.

        :raises OSError: if the port cannot be bound.
        :raises RuntimeError: if the server does not come up within ``timeout`` seconds.
        """
        if self.running:
            return self
        sock = bind_socket(self.host, self.port)
        self.port = sock.getsockname()[1]
        config = uvicorn_config(self.app, tls=self.tls_files, access_log=self.access_log, log_level="warning")
        server = UvicornServer(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"arr-emulator-{self.port}", daemon=True
        )
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                sock.close()
                raise RuntimeError(f"the ARR emulator did not start on {self.url}")
            time.sleep(0.002)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving (in-flight calls get about a second to finish); idempotent."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.request_exit()
        thread.join(timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(2.0)
        self._server = self._thread = None

    def restart(self, *, keep_tokens: bool = True) -> EmulatorServer:
        """Stop, then serve again on the same port with a new state, as a restarted emulator.

        Counters, fault rules and runtime knob changes are gone. Sessions are gone too, unless the
        config has a ``state_file``: then they are read back from it, and the emulated clock went
        on running while the server was down, as the real service's would.

        :param keep_tokens: whether tokens issued before stay valid (the STS is a separate service
            in the real world, unaffected by a restart of the session service).
        """
        self.stop()
        tokens = self.state.tokens
        self.state = EmulatorState(self.config, listen_host=self.host)
        self.state.adopt_tokens(tokens if keep_tokens else TokenRegistry())
        self.app = create_app(state=self.state)
        return self.start()

    def admin_state(self) -> dict[str, Any]:
        """What ``GET /_emulator/state`` answers, read directly."""
        return self.state.snapshot()


def _cert_hosts(host: str) -> tuple[str, ...]:
    hosts = ["localhost", "127.0.0.1", "::1"]
    if host not in hosts and host not in ("0.0.0.0", "::", ""):
        hosts.insert(0, host)
    return tuple(hosts)


def config_to_args(config: EmulatorConfig) -> list[str]:
    """The ``arr-emulator`` command-line flags that reproduce ``config`` (but ``admin_token``,
    which goes in the environment: a command line is visible to every user of the machine)."""
    args: list[str] = []
    for name, value in config.to_dict().items():
        flag = "--" + name.replace("_", "-")
        if name == "retry_after":
            if not value:
                args.append("--no-retry-after")
        elif value is not None:
            args += [flag, str(value)]
    return args


class EmulatorProcess(_Started):
    """The emulator as a child process (``python -m airflow_provider_arr.emulator``).

    :param config: the knobs, passed as command-line flags.
    :param host: interface to listen on.
    :param port: port, 0 for any free one.
    :param tls: serve https with a certificate made by the child (see :attr:`ca_bundle`).
    :param extra_args: more flags (e.g. ``["--access-log"]``).
    :param stderr: where the child's log goes (inherited by default).
    :param env: environment variables to set for the child (after those this process passes on;
        ``ARR_EMULATOR_STATE_FILE`` and ``ARR_EMULATOR_ADMIN_TOKEN`` come from ``config`` or here).
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        tls: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        extra_args: Sequence[str] = (),
        stderr: int | IO[Any] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config or EmulatorConfig()
        self.command = [
            sys.executable,
            "-m",
            "airflow_provider_arr.emulator",
            "--host",
            host,
            "--port",
            str(port),
            *config_to_args(self.config),
            *(["--tls"] if tls else []),
            *extra_args,
        ]
        self.stderr = stderr
        self.env = dict(env or {})
        self.process: subprocess.Popen[str] | None = None
        self.url: str | None = None
        self.ca_bundle: str | None = None

    def start(self, timeout: float = 30.0) -> EmulatorProcess:
        """Start the child and wait for its "listening on" line.

        :raises RuntimeError: if it exits or stays silent for ``timeout`` seconds.
        """
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # The child serves this config, whatever this process's environment says.
        env.pop(STATE_FILE_ENV, None)
        env.pop(ADMIN_TOKEN_ENV, None)
        if self.config.admin_token is not None:
            env[ADMIN_TOKEN_ENV] = self.config.admin_token
        env.update(self.env)
        process = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=self.stderr, text=True, env=env
        )
        self.process = process
        assert process.stdout is not None
        lines: list[str] = []
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            for line in process.stdout:
                lines.append(line)
                if match := CA_BUNDLE_RE.search(line):
                    self.ca_bundle = match.group(1)
                if match := LISTENING_RE.search(line):
                    self.url = match.group(1)
                    return self
        finally:
            timer.cancel()
        process.wait(5)
        raise RuntimeError(
            f"the ARR emulator exited ({process.returncode}) before listening: {''.join(lines)}"
        )

    @property
    def pid(self) -> int | None:
        """The child's process id."""
        return self.process.pid if self.process is not None else None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the child and wait for it (SIGKILL after ``timeout``); returns its exit code."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if process.stdout is not None:
            process.stdout.close()
        return process.returncode

    def kill(self) -> int | None:
        """SIGKILL the child (a crash: nothing is cleaned up) and wait for it; returns its exit code."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.kill()
            process.wait(10)
        if process.stdout is not None:
            process.stdout.close()
        return process.returncode
