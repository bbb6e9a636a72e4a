"""Apache Airflow provider for Azure Remote Rendering (ARR) sessions.

This module must stay import-light: Airflow reads :func:`get_provider_info` through the
``apache_airflow_provider`` entry point, and the emulator imports nothing from the client side.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"

__all__ = ["__version__", "get_provider_info"]


def get_provider_info() -> dict[str, Any]:
    """Describe the provider to Airflow's ProvidersManager."""
    from airflow_provider_arr.connection_form import provider_connection_type

    return {
        "package-name": "airflow-provider-arr",
        "name": "Azure Remote Rendering",
        "description": "Create, extend, wait for and stop Azure Remote Rendering sessions.",
        "integrations": [
            {
                "integration-name": "Azure Remote Rendering",
                "external-doc-url": "https://learn.microsoft.com/azure/remote-rendering/",
                "how-to-guide": ["/docs/howto.md"],
                "tags": ["azure", "rendering", "gpu"],
            }
        ],
        "connection-types": [provider_connection_type()],
        "hooks": [
            {
                "integration-name": "Azure Remote Rendering",
                "python-modules": ["airflow_provider_arr.hooks.arr"],
            }
        ],
        "operators": [
            {
                "integration-name": "Azure Remote Rendering",
                "python-modules": [
                    "airflow_provider_arr.operators.session",
                    "airflow_provider_arr.operators.lease",
                ],
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
                "python-modules": [
                    "airflow_provider_arr.triggers.session",
                    "airflow_provider_arr.triggers.lease",
                ],
            }
        ],
        "extra-links": ["airflow_provider_arr.links.ArrInspectorLink"],
        # Read by Airflow >= 3.2 (`airflow arr sessions ...`); older versions ignore it and use
        # the console script `airflow-arr`.
        "cli": ["airflow_provider_arr.cli.get_provider_cli_commands"],
    }
