"""Apache Airflow provider for Azure Remote Rendering (ARR) sessions.

This module must stay import-light: Airflow reads :func:`get_provider_info` through the
``apache_airflow_provider`` entry point, and the emulator imports nothing from the client side.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "get_provider_info"]


def get_provider_info() -> dict[str, Any]:
    """Describe the provider to Airflow's ProvidersManager."""
    return {
        "package-name": "airflow-provider-arr",
        "name": "Azure Remote Rendering",
        "description": "Create, extend, wait for and stop Azure Remote Rendering sessions.",
        "versions": [__version__],
        "connection-types": [
            {
                "connection-type": "azure_remote_rendering",
                "hook-class-name": "airflow_provider_arr.hooks.arr.ArrHook",
                "hook-name": "Azure Remote Rendering",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port"],
                    "relabeling": {
                        "login": "Account ID",
                        "password": "Account Key",
                        "host": "Service endpoint URL",
                    },
                    "placeholders": {
                        "login": "00000000-0000-0000-0000-000000000000",
                        "host": "https://remoterendering.westus2.mixedreality.azure.com (or set Region)",
                    },
                },
                "conn-fields": {
                    "region": {
                        "label": "Region",
                        "description": "Builds the endpoint when the host is empty, e.g. westus2.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "account_domain": {
                        "label": "Account domain",
                        "description": "e.g. westus2.mixedreality.azure.com; the STS is https://sts.{domain}.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "sts_endpoint": {
                        "label": "STS endpoint",
                        "description": "Base URL of the Secure Token Service (overrides the account domain).",
                        "schema": {"type": ["string", "null"]},
                    },
                    "api_version": {
                        "label": "API version",
                        "description": "v1 (default) or 2021-01-01 (client-chosen ids, idempotent create).",
                        "schema": {"type": "string", "enum": ["v1", "2021-01-01"], "default": "v1"},
                    },
                    "timeout": {
                        "label": "Request timeout (s)",
                        "schema": {"type": ["number", "null"], "default": 30},
                    },
                    "retry_limit": {
                        "label": "Attempts per call",
                        "schema": {"type": ["integer", "null"], "default": 6},
                    },
                },
            }
        ],
        "hooks": [
            {
                "integration-name": "Azure Remote Rendering",
                "python-modules": ["airflow_provider_arr.hooks.arr"],
            }
        ],
        "operators": [
            {
                "integration-name": "Azure Remote Rendering",
                "python-modules": ["airflow_provider_arr.operators.session"],
            }
        ],
        "sensors": [
            {
                "integration-name": "Azure Remote Rendering",
                "python-modules": ["airflow_provider_arr.sensors.session"],
            }
        ],
        "triggers": [
            {
                "integration-name": "Azure Remote Rendering",
                "python-modules": ["airflow_provider_arr.triggers.session"],
            }
        ],
        "extra-links": [],
    }
