"""The token cache's refresh times and the create operator's deterministic session ids."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_arr.client.auth import TOKEN_LIFETIME_WITHOUT_EXP, TokenCache
from airflow_provider_arr.models import SESSION_ID_MAX_LENGTH, validate_session_id
from airflow_provider_arr.operators.session import session_id_for_task

NOW = 1_800_000_000.0


def jwt(**claims: Any) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256'})}.{part(claims)}.c2lnbmF0dXJl"


def test_token_is_reused_until_five_minutes_before_its_exp() -> None:
    cache = TokenCache()
    token = jwt(iat=NOW, exp=NOW + 24 * 3600)
    cache.store(token, now=NOW)
    assert cache.current(now=NOW) == token
    assert cache.current(now=NOW + 24 * 3600 - 301) == token
    assert cache.current(now=NOW + 24 * 3600 - 300) is None  # due: fetch a new one
    assert cache.fetched == 1


def test_token_without_exp_lives_24_hours() -> None:
    cache = TokenCache()
    cache.store("opaque-token-without-claims", now=NOW)
    assert cache.current(now=NOW + TOKEN_LIFETIME_WITHOUT_EXP - 301) == "opaque-token-without-claims"
    assert cache.current(now=NOW + TOKEN_LIFETIME_WITHOUT_EXP - 299) is None


def test_short_lived_token_is_not_due_on_arrival() -> None:
    """A 60 s token (an emulator's): refreshed half-way, not five minutes before its exp."""
    cache = TokenCache()
    token = jwt(iat=NOW, exp=NOW + 60)
    cache.store(token, now=NOW)
    assert cache.current(now=NOW + 29) == token
    assert cache.current(now=NOW + 30) is None


def test_invalidate_forgets_the_token_and_repr_hides_it() -> None:
    cache = TokenCache()
    token = jwt(iat=NOW, exp=NOW + 3600)
    cache.store(token, now=NOW)
    assert token not in repr(cache)
    cache.invalidate()
    assert cache.current(now=NOW) is None


def context(dag_id: str, run_id: str, task_id: str, map_index: int | None = -1) -> Any:
    return {"ti": SimpleNamespace(dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index)}


RUN = "manual__2026-12-01T06:08:53.224136+00:00"


def test_session_id_is_stable_and_only_uses_allowed_characters() -> None:
    first = session_id_for_task(context("arr_render_session", RUN, "create"))
    assert first == session_id_for_task(context("arr_render_session", RUN, "create"))
    assert validate_session_id(first) == first
    assert ":" not in first and "+" not in first and "." not in first
    assert first.startswith("arr_render_session-create-manual__2026-12-01T06-08-53-224136-00-00-")


@pytest.mark.parametrize(
    "other",
    [
        context("arr_render_session", RUN, "create", map_index=0),
        context("arr_render_session", RUN, "create", map_index=1),
        context("arr_render_session", RUN.replace("53.224136", "53.224137"), "create"),
        context("arr_render_session", RUN, "create_2"),
        context("other_dag", RUN, "create"),
        # The same text once sanitised ("." and ":" both become "-"): the hash tells them apart.
        context("arr_render_session", RUN.replace(":", "."), "create"),
    ],
)
def test_every_task_instance_gets_its_own_session_id(other: Any) -> None:
    assert session_id_for_task(other) != session_id_for_task(context("arr_render_session", RUN, "create"))


def test_mapped_and_suffixed_ids_say_so() -> None:
    assert session_id_for_task(context("d", "r", "t", map_index=3)).startswith("d-t-r-3-")
    assert session_id_for_task(context("d", "r", "t"), suffix="fresh").startswith("d-t-r-fresh-")
    assert session_id_for_task(context("d", "r", "t", map_index=None)) == session_id_for_task(
        context("d", "r", "t")
    )


def test_long_identities_are_cut_to_the_service_limit_and_stay_distinct() -> None:
    long_dag = "d" * 250
    one = session_id_for_task(context(long_dag, RUN, "create"))
    two = session_id_for_task(context(long_dag, RUN, "create_again"))
    assert len(one) <= SESSION_ID_MAX_LENGTH and len(two) <= SESSION_ID_MAX_LENGTH
    assert one != two
    assert validate_session_id(one) == one
