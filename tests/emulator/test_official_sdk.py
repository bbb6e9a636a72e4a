"""The unmodified official SDK (azure-mixedreality-remoterendering) runs a whole lifecycle here.

azure-core refuses bearer tokens over plain http, hence TLS; the SDK's STS client ignores
``connection_verify``, hence ``REQUESTS_CA_BUNDLE``.
"""

from __future__ import annotations

from typing import Any

import pytest

# A dev dependency: the test must fail, not skip, if it is missing.
from azure.core import credentials
from azure.mixedreality import remoterendering

from .conftest import ACCOUNT, KEY


def test_official_sdk_lifecycle(emulator_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    server = emulator_factory(tls=True, page_size=1)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", server.ca_bundle)
    client = remoterendering.RemoteRenderingClient(
        endpoint=server.url,
        account_id=ACCOUNT,
        account_domain="westus2.mixedreality.azure.com",
        credential=credentials.AzureKeyCredential(KEY),
        authentication_endpoint_url=server.url,
        polling_interval=0.01,
    )
    with client:
        poller = client.begin_rendering_session(
            session_id="sdk-session", size="Standard", lease_time_minutes=20
        )
        session = poller.result(timeout=10)
        assert session.status == "Ready"
        assert session.hostname and 49152 <= session.handshake_port <= 65534
        assert session.lease_time_minutes == 20 and session.error is None

        fetched = client.get_rendering_session("sdk-session")
        assert fetched.id == "sdk-session" and fetched.size == "Standard" and fetched.created_on is not None

        updated = client.update_rendering_session("sdk-session", lease_time_minutes=30)
        assert updated.lease_time_minutes == 30

        client.begin_rendering_session(session_id="second", size="Premium", lease_time_minutes=5)
        listed = list(client.list_rendering_sessions())  # two pages of one: follows @nextLink
        assert [s.id for s in listed] == ["sdk-session", "second"]

        client.stop_rendering_session("sdk-session")
        client.stop_rendering_session("second")
        assert client.get_rendering_session("sdk-session").status == "Stopped"
        assert list(client.list_rendering_sessions()) == []

    counts = server.admin_state()["counts"]
    assert (
        counts["token"] == 1 and counts["create"] == 2 and counts["stop"] == 2 and counts["unauthorized"] == 0
    )


def test_official_sdk_reports_a_failed_start(emulator_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.core.exceptions import HttpResponseError

    server = emulator_factory(tls=True, error_on_start="No capacity")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", server.ca_bundle)
    client = remoterendering.RemoteRenderingClient(
        endpoint=server.url,
        account_id=ACCOUNT,
        account_domain="westus2.mixedreality.azure.com",
        credential=credentials.AzureKeyCredential(KEY),
        authentication_endpoint_url=server.url,
        polling_interval=0.01,
    )
    with client:
        poller = client.begin_rendering_session(session_id="doomed", size="Standard", lease_time_minutes=5)
        with pytest.raises(HttpResponseError, match=r"No capacity|error state"):
            poller.result(timeout=10)
        with pytest.raises(HttpResponseError) as info:
            client.update_rendering_session("doomed", lease_time_minutes=1)
        assert info.value.status_code == 409
