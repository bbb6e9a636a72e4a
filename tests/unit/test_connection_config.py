"""Connection fields → client settings, with errors that name the field (no network)."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_arr.client.config import DEFAULT_STS, ClientConfig
from airflow_provider_arr.exceptions import ArrInputError


def config(**fields: Any) -> ClientConfig:
    base: dict[str, Any] = {
        "conn_id": "arr_default",
        "login": "acc",
        "password": "key",
        "host": "",
        "extra": {"region": "westus2"},
    }
    base.update(fields)
    return ClientConfig.from_connection(**base)


def test_region_builds_the_endpoint_and_default_sts() -> None:
    cfg = config()
    assert cfg.endpoint == "https://remoterendering.westus2.mixedreality.azure.com"
    assert cfg.sts_endpoint == DEFAULT_STS
    assert cfg.api_version == "v1"


def test_host_wins_and_gets_a_scheme() -> None:
    assert config(host="remoterendering.eastus.mixedreality.azure.com/").endpoint == (
        "https://remoterendering.eastus.mixedreality.azure.com"
    )
    assert config(host="http://127.0.0.1:8765", extra={}).endpoint == "http://127.0.0.1:8765"


def test_account_domain_builds_the_sts() -> None:
    cfg = config(extra={"region": "westus2", "account_domain": "westus2.mixedreality.azure.com"})
    assert cfg.sts_endpoint == "https://sts.westus2.mixedreality.azure.com"


def test_prefixed_extras_are_read() -> None:
    cfg = config(extra={"extra__azure_remote_rendering__region": "uksouth"})
    assert "uksouth" in cfg.endpoint


def test_key_is_not_in_repr() -> None:
    assert "key" not in repr(config(password="key")).replace("account_key", "")


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"login": ""}, "login"),
        ({"login": None}, "login"),
        ({"password": ""}, "password"),
        ({"extra": {}}, "host"),
        ({"extra": {"region": "mars"}}, "region"),
        ({"extra": {"region": "westus2", "account_domain": "westus2"}}, "account_domain"),
        ({"extra": {"region": "westus2", "api_version": "2022-05-01"}}, "api_version"),
        ({"extra": {"region": "westus2", "timeout": "soon"}}, "timeout"),
        ({"extra": {"region": "westus2", "retry_limit": 0}}, "retry_limit"),
        ({"host": "ftp://x"}, "host"),
        ({"extra": {"region": "westus2", "sts_endpoint": "not a url"}}, "sts_endpoint"),
    ],
)
def test_bad_connections_name_the_field(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(ArrInputError, match=named):
        config(**fields)


def test_provider_info_lists_what_exists() -> None:
    import importlib

    from airflow_provider_arr import get_provider_info

    info = get_provider_info()
    for group in ("hooks", "operators", "sensors", "triggers"):
        for entry in info[group]:
            for module in entry["python-modules"]:
                importlib.import_module(module)
    for conn in info["connection-types"]:
        module, _, cls = conn["hook-class-name"].rpartition(".")
        hook = getattr(importlib.import_module(module), cls)
        assert hook.conn_type == conn["connection-type"] == "azure_remote_rendering"


def test_airflow_discovers_the_provider_and_its_form() -> None:
    """Through the entry point: the connection type, its relabelled fields and custom fields."""
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-arr" in manager.providers
    behaviour = manager.field_behaviours["azure_remote_rendering"]
    assert behaviour["relabeling"]["login"] == "Account ID"
    assert behaviour["relabeling"]["password"] == "Account Key"
    prefix = "extra__azure_remote_rendering__"
    fields = {k.removeprefix(prefix) for k in manager.connection_form_widgets if k.startswith(prefix)}
    assert {"region", "account_domain", "sts_endpoint", "api_version"} <= fields


def test_the_connection_port_joins_the_host_unless_it_names_one() -> None:
    assert config(host="http://127.0.0.1", port=8765).endpoint == "http://127.0.0.1:8765"
    assert config(host="http://127.0.0.1:9000", port=8765).endpoint == "http://127.0.0.1:9000"
    assert config(host="arr.example", port=None).endpoint == "https://arr.example"
