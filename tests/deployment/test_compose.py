"""docker-compose.yaml and the Dockerfile, checked without a Docker engine (none runs here).

What is checked is what would break ``docker compose up`` for a user, or make it something other
than the deployment the README promises: the services of the official Airflow 3 Celery setup plus
the emulator, a healthcheck on each long-running one, start order gated on health, the image built
from this repository with the provider in it, the DAGs mounted, and an ``arr_default`` connection
that the hook accepts and that points at the emulator service on the port it listens on.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from airflow_provider_arr.emulator.__main__ import build_parser

REPO = Path(__file__).resolve().parents[2]
AIRFLOW_SERVICES = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "celery worker",
}
LONG_RUNNING = {"postgres", "redis", "arr-emulator", *AIRFLOW_SERVICES}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yaml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def test_services_are_the_official_celery_setup_plus_the_emulator(services: dict[str, Any]) -> None:
    assert {"postgres", "redis", "arr-emulator", "airflow-init", *AIRFLOW_SERVICES} <= set(services)
    for name, command in AIRFLOW_SERVICES.items():
        assert services[name]["command"] == command, name


def test_every_long_running_service_has_a_healthcheck(services: dict[str, Any]) -> None:
    for name in LONG_RUNNING:
        check = services[name].get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert check.get("interval") and check.get("retries"), name


def test_airflow_waits_for_healthy_dependencies_and_a_migrated_database(services: dict[str, Any]) -> None:
    init = services["airflow-init"]
    assert init["environment"]["_AIRFLOW_DB_MIGRATE"] == "true"
    for name in AIRFLOW_SERVICES:
        needs = services[name]["depends_on"]
        for dependency in ("postgres", "redis", "arr-emulator"):
            assert needs[dependency]["condition"] == "service_healthy", (name, dependency)
        assert needs["airflow-init"]["condition"] == "service_completed_successfully", name
    # The worker's task processes talk to the api-server's execution API.
    assert services["airflow-worker"]["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"


def test_celery_executor_on_redis_and_postgres(services: dict[str, Any]) -> None:
    env = services["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert (
        env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
        and "@redis:6379" in env["AIRFLOW__CELERY__BROKER_URL"]
    )
    assert "@postgres/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert "@postgres/" in env["AIRFLOW__CELERY__RESULT_BACKEND"]
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"


def test_airflow_image_is_built_here_with_the_provider(services: dict[str, Any]) -> None:
    images = {services[name]["image"] for name in (*AIRFLOW_SERVICES, "airflow-init", "arr-emulator")}
    assert len(images) == 1, images
    for name in (*AIRFLOW_SERVICES, "arr-emulator"):
        assert services[name]["build"] == ".", name
    dockerfile = (REPO / "Dockerfile").read_text()
    base = re.search(r"^FROM apache/airflow:(\d+\.\d+\.\d+)-python(3\.\d+)$", dockerfile, re.M)
    assert base, "Dockerfile must build FROM an apache/airflow 3 image"
    pins = dict(
        line.split("==", 1) for line in (REPO / "constraints.txt").read_text().splitlines() if "==" in line
    )
    assert base.group(1) == pins["apache-airflow"], "the image's Airflow is the version the tests pin"
    assert re.search(r"^RUN pip install .*/opt/airflow-provider-arr", dockerfile, re.M)
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored  # the build context stays small


def test_dags_are_mounted(services: dict[str, Any]) -> None:
    for name in (*AIRFLOW_SERVICES, "airflow-init"):
        mounts = services[name]["volumes"]
        dags = [m for m in mounts if m.endswith(":/opt/airflow/dags")]
        assert dags, name
        source = dags[0].rsplit(":", 1)[0].replace("${AIRFLOW_PROJ_DIR:-.}", str(REPO))
        assert (Path(source) / "arr_render_session.py").is_file(), source


def test_arr_default_connection_points_at_the_emulator_service(services: dict[str, Any]) -> None:
    from airflow.models.connection import Connection

    from airflow_provider_arr.hooks.arr import ArrHook

    emulator = services["arr-emulator"]
    assert emulator["entrypoint"] == ["arr-emulator"]
    args = build_parser().parse_args(emulator["command"])  # the emulator accepts its options
    assert args.host == "0.0.0.0"
    assert f"{args.port}:{args.port}" in emulator["ports"]

    for name in (*AIRFLOW_SERVICES, "airflow-init"):
        raw = services[name]["environment"]["AIRFLOW_CONN_ARR_DEFAULT"]
        conn = Connection.from_json(raw, conn_id="arr_default")
        assert conn.conn_type == "azure_remote_rendering", name
        assert json.loads(raw)["login"] == args.account_id, "the emulator serves this account"
        assert json.loads(raw)["password"] == args.account_key
        config = ArrHook.config_from_connection(conn)
        assert config.endpoint == f"http://arr-emulator:{args.port}"
        assert config.sts_endpoint == f"http://arr-emulator:{args.port}"
