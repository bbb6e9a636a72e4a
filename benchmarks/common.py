"""What every benchmark shares: an Airflow home, the emulator as a child process, machine facts,
statistics and result files.

The emulator always runs as a separate process, so that its CPU time is not charged to the
client being measured (and can be read on its own, with psutil).
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks"
OUT = BENCH / "out"
PLOTS = BENCH / "plots"
DAGS = REPO / "dags"

ACCOUNT_ID = "11111111-2222-3333-4444-555555555555"
ACCOUNT_KEY = "bench-account-key"
POLL_INTERVAL = 5.0  # real seconds: the service throttles clients that call more often

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def setup_airflow_env(prefix: str = "arr-bench-") -> Path:
    """Point Airflow at a throwaway home (SQLite, no examples) before anything imports it."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS)
    os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(
        [
            {
                "name": "example-dags",
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(DAGS)},
            }
        ]
    )
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{home}/airflow.db"
    os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
    return home


def connection_json(url: str, *, api_version: str = "v1", **extra: Any) -> str:
    """An ``AIRFLOW_CONN_*`` value (JSON form) pointing at the emulator."""
    return json.dumps(
        {
            "conn_type": "azure_remote_rendering",
            "login": ACCOUNT_ID,
            "password": ACCOUNT_KEY,
            "host": url,
            "extra": {"sts_endpoint": url, "api_version": api_version, **extra},
        }
    )


def use_emulator(url: str, conn_id: str = "arr_default", **extra: Any) -> None:
    """Make ``conn_id`` point at the emulator at ``url`` (environment variable)."""
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = connection_json(url, **extra)


class _Bearer:
    """``Authorization: Bearer <credentials>`` for requests (an auth, so it merges with headers)."""

    def __init__(self, credentials: str) -> None:
        self.credentials = credentials

    def __call__(self, request: Any) -> Any:
        request.headers["Authorization"] = f"Bearer {self.credentials}"
        return request


class Emulator:
    """The emulator as a child process (``python -m airflow_provider_arr.emulator``)."""

    def __init__(self, **knobs: Any) -> None:
        from airflow_provider_arr.emulator.config import EmulatorConfig
        from airflow_provider_arr.emulator.server import EmulatorProcess

        knobs.setdefault("account_id", ACCOUNT_ID)
        knobs.setdefault("account_key", ACCOUNT_KEY)
        self.config = EmulatorConfig(**knobs)
        self._log = open(OUT / "emulator.log", "a")  # noqa: SIM115 - closed in stop()
        self.process = EmulatorProcess(self.config, stderr=self._log)
        self.url = ""

    def start(self) -> Emulator:
        self.process.start()
        assert self.process.url is not None
        self.url = self.process.url
        return self

    def stop(self) -> None:
        self.process.stop()
        self._log.close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time the emulator process has used so far."""
        import psutil

        times = psutil.Process(self.pid).cpu_times()
        return float(times.user + times.system)

    def rss_mb(self) -> float:
        import psutil

        return float(psutil.Process(self.pid).memory_info().rss) / 2**20

    # -- admin API ----------------------------------------------------------------------------

    def _request(self, method: str, url: str, **kwargs: Any) -> Any:
        """One set-up or admin call on a connection of its own: these calls come seconds apart,
        from several threads, and a kept-alive connection may have been closed by the server
        (uvicorn closes idle ones after 5 s) just as it is reused."""
        import requests

        with requests.Session() as http:
            return http.request(method, url, timeout=30, headers={"Connection": "close"}, **kwargs)

    def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self._request(method, f"{self.url}/_emulator{path}", **kwargs)
        answer.raise_for_status()
        return answer.json()

    def state(self) -> dict[str, Any]:
        return dict(self.admin("GET", "/state"))

    def counts(self) -> dict[str, int]:
        return dict(self.state()["counts"])

    def configure(self, **knobs: Any) -> None:
        self.admin("POST", "/config", json=knobs)

    def force(self, session_id: str, status: str) -> None:
        self.admin("POST", f"/sessions/{session_id}/status", json={"status": status})

    def reset(self) -> None:
        self.admin("POST", "/reset")

    # -- the ARR API, directly (set-up work that is not being measured) ------------------------

    def token(self) -> str:
        answer = self._request(
            "GET",
            f"{self.url}/accounts/{ACCOUNT_ID}/token",
            auth=_Bearer(f"{ACCOUNT_ID}:{ACCOUNT_KEY}"),
        )
        answer.raise_for_status()
        return str(answer.json()["AccessToken"])

    def create_sessions(self, count: int, token: str | None = None) -> list[str]:
        """Create ``count`` v1 sessions as fast as possible (one connection, back to back);
        returns their ids."""
        import requests

        token = token or self.token()
        headers = {"Authorization": f"Bearer {token}"}
        body = {"maxLeaseTime": "4:0:0", "models": [], "size": "standard"}
        ids = []
        with requests.Session() as http:
            for _ in range(count):
                answer = http.post(
                    f"{self.url}/v1/accounts/{ACCOUNT_ID}/sessions/create",
                    json=body,
                    headers=headers,
                    timeout=30,
                )
                answer.raise_for_status()
                ids.append(str(answer.json()["sessionId"]))
        return ids

    def properties_path(self, session_id: str) -> str:
        return f"/v1/accounts/{ACCOUNT_ID}/sessions/{session_id}/properties"


# --------------------------------------------------------------------------------------------
# Machine facts


def machine_info() -> dict[str, Any]:
    """Cores, load, memory, CPU model, Python and Airflow versions: the context of every figure."""
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("apache-airflow", "apache-airflow-task-sdk", "httpx", "requests", "uvicorn", "fastapi"):
        try:
            info[dist] = version(dist)
        except PackageNotFoundError:
            info[dist] = None
    return info


# --------------------------------------------------------------------------------------------
# Statistics


def median(values: Iterable[float]) -> float:
    data = list(values)
    return float(statistics.median(data)) if data else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear interpolation; NaN for no data."""
    data = sorted(values)
    if not data:
        return math.nan
    if len(data) == 1:
        return float(data[0])
    pos = (len(data) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return float(data[lo] + (data[hi] - data[lo]) * (pos - lo))


def rss_mb() -> float:
    """This process's resident memory now, MiB."""
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def peak_rss_mb() -> float:
    """This process's peak resident memory, MiB (Linux reports ru_maxrss in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------------------------------
# Results


def write_result(name: str, data: dict[str, Any]) -> Path:
    """Save one figure's result as ``benchmarks/out/<name>.json`` (with the machine's facts)."""
    OUT.mkdir(parents=True, exist_ok=True)
    data = {"name": name, "machine": machine_info(), **data}
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str))
    return path


def read_result(name: str) -> dict[str, Any] | None:
    path = OUT / f"{name}.json"
    if not path.exists():
        return None
    return dict(json.loads(path.read_text()))


def plot_path(name: str) -> Path:
    PLOTS.mkdir(parents=True, exist_ok=True)
    return PLOTS / f"{name}.png"


def pyplot() -> Any:
    """matplotlib's pyplot on the non-interactive backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def say(*parts: object) -> None:
    """Progress, on stderr (stdout of some children carries Airflow's logs)."""
    print(*parts, file=sys.stderr, flush=True)


OUT.mkdir(parents=True, exist_ok=True)
