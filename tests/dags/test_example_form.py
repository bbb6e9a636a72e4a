"""The example DAG's trigger form accepts every lease its description promises, exactly the
leases the provider accepts, and rejects the rest in the form itself."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

from airflow_provider_arr.exceptions import ArrInputError
from airflow_provider_arr.models import validate_lease

DAGS = Path(__file__).resolve().parents[2] / "dags"
PROMISED = ["0:00:01", "1:00:00", "4:0:0", "23:59:59", "1.00:00:00", "0.12:30:00"]
REFUSED = [
    "24:00:00",
    "0:00:00",
    "00:00:00",
    "1.00:00:01",
    "1.01:00:00",
    "25:00:00",
    "1:60:00",
    "abc",
    "-1:00:00",
]


@pytest.fixture(scope="module")
def lease_param() -> object:
    sys.path.insert(0, str(DAGS))
    try:
        import arr_render_session
    finally:
        sys.path.remove(str(DAGS))
    return arr_render_session.dag.params.get_param("max_lease_time")


@pytest.mark.parametrize("value", PROMISED)
def test_the_form_and_the_provider_accept_every_promised_lease(lease_param: object, value: str) -> None:
    copy.deepcopy(lease_param).resolve(value)  # type: ignore[attr-defined]
    validate_lease(value)


@pytest.mark.parametrize("value", REFUSED)
def test_the_form_refuses_what_the_provider_refuses(lease_param: object, value: str) -> None:
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError):
        copy.deepcopy(lease_param).resolve(value)  # type: ignore[attr-defined]
    with pytest.raises(ArrInputError):
        validate_lease(value)
