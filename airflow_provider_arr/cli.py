"""``airflow arr sessions list | stop ID | sweep``: the on-call person's command.

Registered in Airflow's own CLI through the ``cli`` entry of ``get_provider_info()``, which
Airflow reads from 3.2 on (:func:`get_provider_cli_commands`); on Airflow 3.0 and 3.1 the same
commands are the package's console script ``airflow-arr sessions ...`` (:func:`main`). Both are
built from one declaration with argparse.

* ``list``: the account's active sessions, with their owner as the sweep sees it (dag / run /
  task, or foreign) and what a sweep would do with each;
* ``stop ID``: stop one session (idempotent: an ended or unknown session counts as stopped);
* ``sweep``: the orphan sweep, a **dry run** unless ``--apply``.

Owner records and run states are read as ``airflow variables get`` and ``airflow dags state``
read them (:class:`~airflow_provider_arr.ownership.AirflowModelStore`): run the command where the
Airflow CLI runs, with its configuration.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_arr.connection_form import DEFAULT_CONN_ID

if TYPE_CHECKING:
    from airflow_provider_arr.hooks.arr import ArrHook
    from airflow_provider_arr.sweep import SweepReport

#: The first Airflow version that reads the ``cli`` entry of a provider's info.
PROVIDER_CLI_SINCE = (3, 2)
GROUP_HELP = "Azure Remote Rendering sessions: list, stop, sweep orphans"


def provider_cli_supported() -> bool:
    """True when the installed Airflow registers provider commands (``airflow arr ...``)."""
    try:
        from airflow import __version__
    except ImportError:  # pragma: no cover - the provider requires Airflow
        return False
    parts = []
    for piece in __version__.split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts) >= PROVIDER_CLI_SINCE


def stop_command(session_id: str, conn_id: str = DEFAULT_CONN_ID) -> str:
    """The exact command that stops ``session_id``, to paste into a shell (error messages quote it)."""
    base = "airflow arr sessions" if provider_cli_supported() else "airflow-arr sessions"
    command = f"{base} stop {shlex.quote(session_id)}"
    if conn_id != DEFAULT_CONN_ID:
        command += f" --conn-id {shlex.quote(conn_id)}"
    return command


# -- the commands -----------------------------------------------------------------------------------


def _hook(args: argparse.Namespace) -> ArrHook:
    from airflow_provider_arr.hooks.arr import ArrHook

    return ArrHook(arr_conn_id=args.conn_id)


def _report(args: argparse.Namespace, *, apply: bool) -> SweepReport:
    import logging

    from airflow_provider_arr.orphans import SweepParams
    from airflow_provider_arr.ownership import AirflowModelStore
    from airflow_provider_arr.sweep import sweep

    params = SweepParams.build(
        dry_run=not apply,
        max_age=getattr(args, "max_age", None),
        include_foreign=getattr(args, "include_foreign", False),
        price_per_hour=getattr(args, "price_per_hour", None),
    )
    quiet = logging.getLogger("airflow_provider_arr.cli.quiet")
    quiet.propagate = False  # the command prints the table itself
    return sweep(_hook(args), AirflowModelStore(), params, pace=getattr(args, "pace", 5.0), log=quiet)


def list_sessions(args: argparse.Namespace) -> None:
    """``sessions list``: every active session, its owner, and what a sweep would do."""
    report = _report(args, apply=False)
    print(report.table())
    print(f"{len(report.judgements)} session(s); {len(report.ended)} would be stopped by a sweep")


def stop_session(args: argparse.Namespace) -> None:
    """``sessions stop ID``: stop one session; an ended or unknown one counts as stopped."""
    from airflow_provider_arr.exceptions import ArrError
    from airflow_provider_arr.models import validate_session_id
    from airflow_provider_arr.ownership import AirflowModelStore

    try:
        outcome = _hook(args).ensure_stopped(validate_session_id(args.session_id))
    except ArrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    print(outcome)
    # No record, or no metadata database here: nothing to clean up.
    with contextlib.suppress(Exception):
        AirflowModelStore().forget(args.session_id)


def sweep_sessions(args: argparse.Namespace) -> None:
    """``sessions sweep [--apply]``: the orphan sweep (a dry run unless ``--apply``)."""
    from airflow_provider_arr.exceptions import ArrInputError

    try:
        report = _report(args, apply=args.apply)
    except ArrInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(report.table())
    print(report.summary())
    if not args.apply and report.ended:
        print("dry run: nothing was stopped; add --apply to stop the sessions marked 'would stop'")
    if report.errors:
        for error in report.errors:
            print(f"error: could not stop {error}", file=sys.stderr)
        raise SystemExit(1)


# -- one declaration, two parsers ------------------------------------------------------------------

_CONN = (
    ("--conn-id",),
    {"default": DEFAULT_CONN_ID, "help": f"the ARR connection (default {DEFAULT_CONN_ID})"},
)
_SWEEP_ARGS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    _CONN,
    (("--apply",), {"action": "store_true", "help": "stop the orphans (default: dry run, stop nothing)"}),
    (
        ("--max-age",),
        {
            "dest": "max_age",
            "default": None,
            "help": "also stop sessions older than this (timespan or hours)",
        },
    ),
    (
        ("--include-foreign",),
        {
            "dest": "include_foreign",
            "action": "store_true",
            "help": "also judge sessions this provider did not create (by --max-age only)",
        },
    ),
    (
        ("--price-per-hour",),
        {"dest": "price_per_hour", "type": float, "default": None, "help": "price of one session-hour"},
    ),
    (("--pace",), {"type": float, "default": 5.0, "help": "seconds between two stop calls (default 5)"}),
)
COMMANDS: tuple[tuple[str, str, Callable[[argparse.Namespace], None], tuple[Any, ...]], ...] = (
    ("list", "List active sessions, their owner as the sweep sees it", list_sessions, (_CONN,)),
    (
        "stop",
        "Stop one session (an ended or unknown session counts as stopped)",
        stop_session,
        ((("session_id",), {"metavar": "ID", "help": "the session id"}), _CONN),
    ),
    ("sweep", "Stop orphaned sessions (a dry run unless --apply)", sweep_sessions, _SWEEP_ARGS),
)


def get_provider_cli_commands() -> list[Any]:
    """The ``arr`` command group for Airflow's CLI (read through ``get_provider_info()['cli']``)."""
    from airflow.cli.cli_config import ActionCommand, Arg, GroupCommand, lazy_load_command

    actions = [
        ActionCommand(
            name=name,
            help=text,
            func=lazy_load_command(f"{__name__}.{func.__name__}"),
            args=[Arg(flags, **kwargs) for flags, kwargs in args],
        )
        for name, text, func, args in COMMANDS
    ]
    return [
        GroupCommand(
            name="arr",
            help=GROUP_HELP,
            subcommands=[GroupCommand(name="sessions", help="ARR sessions", subcommands=actions)],
        )
    ]


def build_parser(prog: str = "airflow-arr") -> argparse.ArgumentParser:
    """The console script's parser: ``airflow-arr sessions list | stop ID | sweep``."""
    parser = argparse.ArgumentParser(prog=prog, description=GROUP_HELP)
    groups = parser.add_subparsers(dest="group", metavar="GROUP", required=True)
    sessions = groups.add_parser("sessions", help="ARR sessions")
    commands = sessions.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, text, func, args in COMMANDS:
        sub = commands.add_parser(name, help=text, description=text)
        for flags, kwargs in args:
            sub.add_argument(*flags, **kwargs)
        sub.set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The ``airflow-arr`` console script."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
