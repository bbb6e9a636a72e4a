"""
### Render several scenes, one ARR session each, and always stop every session

`scene_models >> create[i] >> wait_ready[i] >> render[i] >> stop[i]`, mapped over the `scenes` param

* **scene_models** turns the `scenes` param (one asset container URL per scene) into one list
  of models per session.
* **create** is mapped: one session per scene, each leased and preloaded with its scene.
* **wait_ready** is mapped and deferrable: every wait sits in a triggerer, none holds a worker
  slot during the minutes a session takes to start.
* **render** is a placeholder for your workload, one task per scene: it receives the scene and
  the hostname of the session that has it loaded.
* **stop** is the *teardown* of create, mapped over the created sessions: it runs whatever fails
  in between, so no session is left billing. Stopping is idempotent, and retried (a throttled
  stop is tried again later, not given up).

Every call of every task and every triggerer counts against the account's throttle (about one
call per 5 to 10 s for the whole account): many scenes, or many runs at once, make each of them
slower rather than faster. The connection is `arr_default` (see the README).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, task

from airflow_provider_arr.operators.session import ArrCreateSessionOperator, ArrStopSessionOperator
from airflow_provider_arr.sensors.session import ArrSessionReadySensor

with DAG(
    dag_id="arr_render_scenes",
    description="One ARR session per scene, mapped: create, wait until ready, render, always stop",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    is_paused_upon_creation=True,
    tags=["arr", "rendering", "example", "mapped"],
    doc_md=__doc__,
    render_template_as_native_obj=True,
    default_args={"retries": 0},
    params={
        "scenes": Param(
            ["https://example.blob.core.windows.net/scenes/a.arrAsset"],
            type="array",
            items={"type": "string"},
            minItems=1,
            description="One asset container URL per scene; each scene gets a session of its own.",
        ),
        "size": Param(
            "standard",
            type="string",
            enum=["standard", "premium"],
            description="Server size: standard, or premium for models over 20 million polygons.",
        ),
        "max_lease_time": Param(
            "1:00:00",
            type="string",
            pattern=r"^(\d+\.)?\d{1,2}:\d{1,2}:\d{1,2}$",
            description="Lease of each session as [d.]hh:mm:ss, counted from its start; at most 24:00:00.",
        ),
        "poll_interval": Param(
            10,
            type="number",
            minimum=5,
            description="Seconds between status reads of each starting session.",
        ),
        "render_seconds": Param(
            0,
            type="number",
            minimum=0,
            description="How long each placeholder render task pretends to work.",
        ),
    },
) as dag:

    @task
    def scene_models(params: dict | None = None) -> list[list[str]]:
        """The models of each session: one scene each."""
        return [[scene] for scene in (params or {}).get("scenes") or []]

    models = scene_models()

    create = ArrCreateSessionOperator.partial(
        task_id="create",
        size="{{ params.size }}",
        max_lease_time="{{ params.max_lease_time }}",
    ).expand(models=models)

    wait_ready = ArrSessionReadySensor.partial(
        task_id="wait_ready",
        poll_interval="{{ params.poll_interval }}",
        deferrable=True,
        timeout=timedelta(minutes=30),
    ).expand(session_id=create.output)

    @task
    def render(scene_and_hostname: tuple[list[str], str], params: dict | None = None) -> str:
        """PLACEHOLDER for your rendering workload: replace the body with your client code."""
        import logging
        import time

        scene, hostname = scene_and_hostname
        logging.getLogger("airflow.task").info("render placeholder: would render %s on %s", scene, hostname)
        time.sleep(float((params or {}).get("render_seconds") or 0))
        return hostname

    rendered = render.expand(scene_and_hostname=models.zip(wait_ready.output))

    # A stop the service throttled (429) past the hook's own retries is tried again later: a
    # session that is not stopped is billed until its lease runs out.
    stop = ArrStopSessionOperator.partial(
        task_id="stop", retries=5, retry_delay=timedelta(seconds=30), retry_exponential_backoff=True
    ).expand(session_id=create.output)

    wait_ready >> rendered >> stop
    stop.as_teardown(setups=create)  # type: ignore[arg-type]  # a mapped setup works; the stub says BaseOperator
