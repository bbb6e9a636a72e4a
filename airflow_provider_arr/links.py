"""The operator extra link of the create operator and the sensor: the session's ARR Inspector.

ArrInspector is the web page a ready session serves at ``https://{hostname}:{arrInspectorPort}``
(GPU, frame and network statistics of the running session). The link is built from what the
task pushed to XCom (``hostname``, ``arr_inspector_port``), so it still works after the task
ended, and stays hidden while the session has no hostname (it was never ready).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_arr._compat import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk.types import TaskInstanceKey

#: The port of a session's ArrInspector when the answer gives none (the v1 dialect has no
#: ``arrInspectorPort`` field; ArrInspector listened on this port in the v1-era documentation).
DEFAULT_INSPECTOR_PORT = 8443
HOSTNAME_KEY = "hostname"
PORT_KEY = "arr_inspector_port"


def inspector_url(hostname: str | None, port: int | None) -> str:
    """The ArrInspector URL of a session, or ``""`` when it has no hostname (not ready)."""
    if not hostname:
        return ""
    return f"https://{hostname}:{port or DEFAULT_INSPECTOR_PORT}"


def push_address(ti: Any, hostname: str | None, port: int | None) -> None:
    """Push where a ready session can be reached, for the downstream tasks and the link."""
    ti.xcom_push(key=HOSTNAME_KEY, value=hostname)
    ti.xcom_push(key=PORT_KEY, value=port)


class ArrInspectorLink(BaseOperatorLink):
    """``ARR Inspector``: the ready session's inspector page."""

    name = "ARR Inspector"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        """Read the session's address back from XCom (empty, so hidden, until it was ready)."""
        from airflow_provider_arr._compat import XCom

        hostname = XCom.get_value(ti_key=ti_key, key=HOSTNAME_KEY)
        port = XCom.get_value(ti_key=ti_key, key=PORT_KEY)
        return inspector_url(hostname, port if isinstance(port, int) else None)
