"""``get_provider_info()`` against the ``provider_info.schema.json`` that the installed Airflow ships.

Self-contained on purpose (no import of ``tests.*``): ``scripts/compat.py`` copies this file into
every cell of the compatibility matrix and runs it there, against that cell's Airflow (3.0 to 3.3
all ship the schema as ``airflow/provider_info.schema.json``, the file ProvidersManager validates
every provider with).
"""

from __future__ import annotations

import importlib
import json
from importlib.metadata import entry_points
from importlib.resources import files
from typing import Any

import jsonschema
import pytest

from airflow_provider_arr import __version__, get_provider_info

INTEGRATION = "Azure Remote Rendering"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    path = files("airflow") / "provider_info.schema.json"
    assert path.is_file(), f"no provider_info.schema.json in {files('airflow')}"
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def info() -> dict[str, Any]:
    return get_provider_info()


def test_provider_info_validates_against_the_installed_airflow_schema(
    schema: dict[str, Any], info: dict[str, Any]
) -> None:
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = [f"{list(e.path)}: {e.message}" for e in validator_class(schema).iter_errors(info)]
    assert not errors, errors


def test_provider_info_has_no_key_the_schema_does_not_define(
    schema: dict[str, Any], info: dict[str, Any]
) -> None:
    # The schema allows extra keys, so validation alone would not catch one it does not define.
    assert set(info) <= set(schema["properties"]), set(info) - set(schema["properties"])


def test_the_entry_point_serves_this_function() -> None:
    (point,) = [
        p for p in entry_points(group="apache_airflow_provider") if p.value.startswith("airflow_provider_arr")
    ]
    assert point.load()() == get_provider_info()


def test_every_integration_name_is_declared_and_every_module_imports(info: dict[str, Any]) -> None:
    (integration,) = info["integrations"]
    assert integration["integration-name"] == INTEGRATION
    assert integration["external-doc-url"].startswith("https://")
    assert integration["how-to-guide"] and all(p.startswith("/docs/") for p in integration["how-to-guide"])
    assert integration["tags"]
    for section in ("hooks", "operators", "sensors", "triggers"):
        (entry,) = info[section]
        assert entry["integration-name"] == INTEGRATION, section
        for module in entry["python-modules"]:
            importlib.import_module(module)


def test_the_connection_type_names_a_hook_of_that_type(info: dict[str, Any]) -> None:
    (conn,) = info["connection-types"]
    module, _, name = conn["hook-class-name"].rpartition(".")
    hook = getattr(importlib.import_module(module), name)
    assert hook.conn_type == conn["connection-type"]
    assert hook.hook_name == conn["hook-name"]


def test_the_package_name_and_version_are_the_distribution_s() -> None:
    from importlib.metadata import version

    assert get_provider_info()["package-name"] == "airflow-provider-arr"
    assert version("airflow-provider-arr") == __version__
