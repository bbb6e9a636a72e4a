"""An emulator of the Azure Remote Rendering session service, for tests, demos and benchmarks.

It serves the Secure Token Service, both dialects of the session API (v1 and 2021-01-01) over one
session store, and an admin API under ``/_emulator`` to inject faults and inspect what happened.
It imports nothing from the client side of this package, nor from Airflow.

>>> from airflow_provider_arr.emulator import EmulatorConfig, EmulatorServer
>>> with EmulatorServer(EmulatorConfig(startup_delay=30, time_scale=100)) as server:  # doctest: +SKIP
...     print(server.url)
"""

from __future__ import annotations

from .app import create_app
from .config import EmulatorConfig
from .server import EmulatorProcess, EmulatorServer
from .state import EmulatorState

__all__ = ["EmulatorConfig", "EmulatorProcess", "EmulatorServer", "EmulatorState", "create_app"]
