"""``arr-emulator`` / ``python -m airflow_provider_arr.emulator``: run the emulator in the foreground.

Prints one line, ``ARR emulator listening on <url> (account <id>)``, once it accepts connections
(preceded, with TLS, by ``ARR emulator CA bundle: <path>``), and stops cleanly on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from uvicorn.config import LOGGING_CONFIG

from .app import create_app
from .config import ADMIN_TOKEN_ENV, DEFAULT_ACCOUNT_ID, DEFAULT_ACCOUNT_KEY, STATE_FILE_ENV, EmulatorConfig
from .gate import is_loopback
from .server import UvicornServer, base_url, bind_socket, uvicorn_config
from .state import EmulatorState
from .statefile import StateFileError
from .tls import TlsFiles, make_certificate


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="arr-emulator",
        description="Emulate the Azure Remote Rendering session service (STS, v1 and 2021-01-01 "
        "session APIs) with an admin API under /_emulator for fault injection.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="interface to listen on")
    add("--port", type=int, default=8765, help="port to listen on; 0 picks a free one (printed)")
    add("--account-id", default=DEFAULT_ACCOUNT_ID, help="the account the emulator serves")
    add("--account-key", default=DEFAULT_ACCOUNT_KEY, help="its key, for the STS")
    add("--startup-delay", type=float, default=60.0, help="emulated seconds a session stays Starting")
    add("--stop-delay", type=float, default=5.0, help="emulated seconds a session stays Stopping")
    add("--time-scale", type=float, default=1.0, help="emulated seconds per real second")
    add("--token-ttl", type=float, default=86400.0, help="access token lifetime, real seconds")
    add(
        "--throttle-rate",
        type=float,
        default=None,
        help="requests/s per account (token bucket); none if unset",
    )
    add("--throttle-burst", type=int, default=5, help="token bucket capacity")
    add("--no-retry-after", action="store_true", help="429 answers without a Retry-After header")
    add("--error-rate", type=float, default=0.0, help="fraction of session calls answered 500/503 at random")
    add("--error-on-start", metavar="MSG", default=None, help="new sessions end in Error with MSG")
    add("--slow", type=float, default=0.0, help="real seconds added before every ARR/STS answer")
    add("--page-size", type=int, default=10, help="sessions per page of the 2021-01-01 list")
    add("--seed", type=int, default=None, help="random seed (error rate, fault probabilities)")
    add("--region", default="westus2", help="region named in session hostnames")
    add("--tls", action="store_true", help="serve https with a self-signed certificate made at start")
    add("--tls-cert", type=Path, default=None, help="serve https with this certificate (PEM)")
    add("--tls-key", type=Path, default=None, help="... and this private key (PEM)")
    add(
        "--state-file",
        type=Path,
        default=None,
        help="keep sessions, tokens and the emulated clock in this JSON file across restarts "
        f"(written on every change, read at start; env {STATE_FILE_ENV}); in memory only if unset",
    )
    add(
        "--admin-token",
        default=None,
        help="require 'Authorization: Bearer TOKEN' on every /_emulator call; needed for the admin "
        f"API on a non-loopback address (prefer env {ADMIN_TOKEN_ENV}: a command line is visible "
        "to every user)",
    )
    add("--access-log", action="store_true", help="log every request")
    add("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator until SIGINT/SIGTERM; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # Options given on the command line win over the environment; an empty variable is unset.
    state_file: Path | None = args.state_file
    if state_file is None and os.environ.get(STATE_FILE_ENV):
        state_file = Path(os.environ[STATE_FILE_ENV])
    try:
        same_names = [
            "account_id",
            "account_key",
            "startup_delay",
            "stop_delay",
            "time_scale",
            "token_ttl",
            "throttle_rate",
            "throttle_burst",
            "error_rate",
            "slow",
            "error_on_start",
            "page_size",
            "seed",
            "region",
        ]
        config = EmulatorConfig(
            **{name: getattr(args, name) for name in same_names},
            retry_after=not args.no_retry_after,
            state_file=state_file,
            admin_token=args.admin_token or os.environ.get(ADMIN_TOKEN_ENV) or None,
        )
    except ValueError as exc:
        parser.error(str(exc))
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    tls: TlsFiles | None = None
    if args.tls_cert is not None:
        tls = TlsFiles(ca_bundle=args.tls_cert, cert=args.tls_cert, key=args.tls_key)
    elif args.tls:
        tls = make_certificate(("localhost", "127.0.0.1", "::1", args.host))
        print(f"ARR emulator CA bundle: {tls.ca_bundle}", flush=True)

    try:
        state = EmulatorState(config, listen_host=args.host)
    except StateFileError as exc:
        print(f"arr-emulator: {exc}", file=sys.stderr)
        return 1
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as exc:
        print(f"arr-emulator: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    if config.admin_token is None and not is_loopback(args.host):
        print(
            f"arr-emulator: the admin API (/_emulator) is disabled: listening on {args.host} "
            f"without an admin token (set --admin-token or {ADMIN_TOKEN_ENV} to enable it)",
            file=sys.stderr,
        )
    app = create_app(state=state)

    def announce(sockets: list[socket.socket]) -> None:
        url = base_url(args.host, sock.getsockname()[1], tls is not None)
        print(f"ARR emulator listening on {url} (account {config.account_id})", flush=True)

    server = UvicornServer(
        uvicorn_config(
            app, tls=tls, access_log=args.access_log, log_level=args.log_level, log_config=LOGGING_CONFIG
        ),
        on_started=announce,
        handle_signals=True,
    )
    try:
        server.run(sockets=[sock])
    finally:
        if args.tls and args.tls_cert is None and tls is not None:
            shutil.rmtree(tls.ca_bundle.parent, ignore_errors=True)
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
