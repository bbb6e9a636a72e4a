"""docker-compose.yaml and the Dockerfile, checked without a Docker engine (none runs here).

What is checked is what would break ``docker compose up`` for a user, or make it something other
than the deployment the README promises: the services of the official Airflow 3 Celery setup plus
the emulator, a healthcheck on each long-running one, start order gated on health, the image built
from this repository with the provider in it, the DAGs mounted, and an ``arr_default`` connection
that the hook accepts and that points at the emulator service on the port it listens on.

The deployment tests run this file's topology as processes (``airflow_deployment``): the last
tests check that the harness and the file agree (services, replicas, commands, environment,
the emulator's throttle), the harness reading them from the file wherever it can.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from airflow_provider_arr.emulator.__main__ import build_parser
from tests.deployment import airflow_deployment as harness

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
        assert (Path(source) / "arr_render_scenes.py").is_file(), source


def test_arr_default_connection_points_at_the_emulator_service(services: dict[str, Any]) -> None:
    from airflow.models.connection import Connection

    from airflow_provider_arr.hooks.arr import ArrHook

    emulator = services["arr-emulator"]
    assert emulator["entrypoint"] == ["arr-emulator"]
    args, unknown = build_parser().parse_known_args(emulator["command"])
    # --state-file is being added to the emulator in parallel: until then, the only unknown option.
    known = harness.emulator_options()
    assert unknown == ([] if "--state-file" in known else ["--state-file", "/data/arr-emulator-state.json"])
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


def test_distributed_two_schedulers_triggerers_and_workers(compose: dict[str, Any]) -> None:
    replicas = {name: harness.compose_replicas(compose, name) for name in AIRFLOW_SERVICES}
    assert replicas == {
        "airflow-apiserver": 1,
        "airflow-scheduler": 2,
        "airflow-dag-processor": 1,
        "airflow-triggerer": 2,
        "airflow-worker": 2,
    }


def test_emulator_is_throttled_keeps_its_state_and_guards_its_admin_api(services: dict[str, Any]) -> None:
    emulator = services["arr-emulator"]
    command = [str(c) for c in emulator["command"]]
    pairs = dict(zip(command[::2], command[1::2], strict=True))
    assert pairs["--throttle-rate"] == "0.2" and pairs["--throttle-burst"] == "5"
    assert pairs["--state-file"] == "/data/arr-emulator-state.json"
    assert "arr-emulator-data:/data" in emulator["volumes"]
    assert emulator["environment"]["ARR_EMULATOR_ADMIN_TOKEN"]
    assert "ARR_EMULATOR_ADMIN_TOKEN" in " ".join(emulator["healthcheck"]["test"])


def test_harness_runs_the_compose_services_with_their_commands(compose: dict[str, Any]) -> None:
    specs = harness.compose_topology(compose)
    names = [s.name for s in specs]
    assert names == [
        "airflow-apiserver-1",
        "airflow-dag-processor-1",
        "airflow-scheduler-1",
        "airflow-scheduler-2",
        "airflow-triggerer-1",
        "airflow-triggerer-2",
        "airflow-worker-1",
        "airflow-worker-2",
    ]
    for spec in specs:
        command = ["airflow", *AIRFLOW_SERVICES[spec.service].split()]
        # A worker's node name is its container's host name under compose; named here.
        extra = ["--celery-hostname", f"{spec.name}@%h"] if spec.service == "airflow-worker" else []
        assert spec.argv == command + extra, spec
        assert spec.env == {"ARR_DEPLOY_HOSTNAME": spec.name}, spec


def test_harness_environment_is_the_compose_environment(compose: dict[str, Any], tmp_path: Path) -> None:
    dep = harness.Deployment(tmp_path)
    dep.venv = tmp_path / "venv"
    dep.emulator_url = "http://127.0.0.1:40000"
    dep.api_url = "http://127.0.0.1:40001"
    env = dep.airflow_env(40001)
    common = harness.compose_airflow_env(compose)
    tuning = harness.TEST_TUNING
    # Everything of x-airflow-common is set; only addresses and secrets differ.
    assert set(common) <= set(env)
    differ = {k for k in common if env[k] != common[k]}
    assert differ <= set(harness.LOCAL_ENV), differ
    assert not set(tuning) & set(common), "the test tuning must not silently override the compose file"
    # What the harness adds (not what this test process happens to carry: earlier tests, Airflow
    # itself, or a developer's shell may have set AIRFLOW_* variables it passes on unchanged).
    added = {
        k
        for k in env
        if k.startswith(("AIRFLOW", "ARR_")) and k not in common and os.environ.get(k) != env[k]
    }
    assert added <= set(harness.LOCAL_ONLY) | set(tuning), added - set(harness.LOCAL_ONLY) - set(tuning)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == f"{harness.REDIS}/{dep.redis_db}"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql+psycopg2://")
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].endswith(f"/{dep.db_name}")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith(f"/{dep.db_name}")
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:40001/execution/"
    ours, theirs = json.loads(env["AIRFLOW_CONN_ARR_DEFAULT"]), json.loads(common["AIRFLOW_CONN_ARR_DEFAULT"])
    assert ours["host"] == ours["extra"]["sts_endpoint"] == dep.emulator_url
    for conn in (ours, theirs):
        conn.pop("host")
        conn["extra"].pop("sts_endpoint")
    assert ours == theirs  # same account, dialect and everything else


def test_harness_runs_the_compose_emulator_command(compose: dict[str, Any]) -> None:
    known = harness.emulator_options()
    argv = harness.compose_emulator_argv(compose, known_options=known)
    assert argv[0] == "arr-emulator" == compose["services"]["arr-emulator"]["entrypoint"][0]
    pairs = dict(zip(argv[1::2], argv[2::2], strict=False))
    assert pairs["--throttle-rate"] == "0.2" and pairs["--throttle-burst"] == "5"  # the service's rate
    assert pairs["--host"] == "127.0.0.1" and pairs["--port"] == "0"
    assert float(pairs["--time-scale"]) == harness.TIME_SCALE
    assert "--state-file" not in argv  # the harness adds its own path when the option exists
    build_parser().parse_args(argv[1:])  # all of it is understood
