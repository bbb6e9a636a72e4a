"""In-cell checks of ``scripts/compat.py``: run by a matrix cell's own interpreter, outside the repository.

Imports every module of the installed wheel, then asks the installed Airflow what its UI would
show for the ARR connection type (the hook metadata of the connection form), and prints one JSON
line: ``{"modules": [...], "form": {...}, "airflow": "3.x.y"}``. Exits non-zero on a failure.
"""

from __future__ import annotations

import importlib
import json
import sys
import warnings
from typing import Any

MODULES = [
    "airflow_provider_arr",
    "airflow_provider_arr._compat",
    "airflow_provider_arr.connection_form",
    "airflow_provider_arr.hooks.arr",
    "airflow_provider_arr.operators.session",
    "airflow_provider_arr.sensors.session",
    "airflow_provider_arr.triggers.session",
    "airflow_provider_arr.emulator.app",
]


def form() -> dict[str, Any]:
    """The connection form the API server hands the UI (``GET /ui/connections/hook_meta``)."""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metas = HookMetaService.hook_meta_data()
    ours = [m for m in metas if m.connection_type == "azure_remote_rendering"]
    if not ours:
        raise SystemExit("the API server's hook metadata has no azure_remote_rendering connection type")
    meta = ours[0].model_dump(mode="json")
    deprecations = [str(w.message) for w in caught if "airflow_provider_arr" in str(w.message)]
    return {
        "hook_name": meta["hook_name"],
        "extra_fields": sorted((meta.get("extra_fields") or {}).keys()),
        "standard_fields": {
            name: field for name, field in (meta.get("standard_fields") or {}).items() if field
        },
        "provider_deprecations": deprecations,
    }


def main() -> int:
    for name in MODULES:
        importlib.import_module(name)
    import airflow

    print(json.dumps({"airflow": airflow.__version__, "modules": MODULES, "form": form()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
