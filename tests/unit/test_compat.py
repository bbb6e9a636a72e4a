"""``_compat``: the version flags, the connection form of Airflow < 3.2, the on_kill notice.

The other Airflow versions are exercised for real by ``make compat`` (``scripts/compat.py``),
which installs the wheel with each of them; here the installed (pinned) Airflow is the one.
"""

from __future__ import annotations

import logging

import airflow
import pytest
from packaging.version import Version

from airflow_provider_arr import _compat
from airflow_provider_arr.connection_form import EXTRAS, connection_form_widgets
from airflow_provider_arr.hooks.arr import ArrHook


def test_version_flags_follow_the_installed_airflow() -> None:
    minor = Version(airflow.__version__).release[:2]
    assert (minor >= (3, 1)) == _compat.AIRFLOW_V_3_1_PLUS
    assert (minor >= (3, 2)) == _compat.AIRFLOW_V_3_2_PLUS
    assert (minor >= (3, 3)) == _compat.AIRFLOW_V_3_3_PLUS
    assert _compat.TRIGGER_ON_KILL == _compat.AIRFLOW_V_3_3_PLUS
    assert _compat.DECLARATIVE_CONNECTION_FORM == _compat.AIRFLOW_V_3_2_PLUS


def test_the_names_come_from_where_this_airflow_keeps_them() -> None:
    if _compat.AIRFLOW_V_3_1_PLUS:
        from airflow.sdk import BaseHook

        assert _compat.BaseHook is BaseHook
    if _compat.AIRFLOW_V_3_2_PLUS:
        from airflow.sdk import conf

        assert _compat.conf is conf
    assert _compat.conf.getboolean("operators", "default_deferrable", fallback=False) in (True, False)
    assert issubclass(_compat.TaskDeferred, BaseException)


def test_the_legacy_form_has_one_allowed_field_per_extra_with_its_label_and_default() -> None:
    from wtforms import BooleanField, IntegerField, PasswordField, StringField, validators

    # What Airflow 3.0/3.1's ProvidersManager accepts from get_connection_form_widgets().
    allowed = (IntegerField, PasswordField, StringField, BooleanField)
    widgets = ArrHook.get_connection_form_widgets()
    assert list(widgets) == [e.name for e in EXTRAS]
    for extra in EXTRAS:
        field = widgets[extra.name]
        assert field.field_class in allowed, extra.name
        assert field.args[0] == extra.label
        assert field.kwargs["description"] == extra.description
        checks = field.kwargs["validators"]
        assert any(isinstance(v, validators.Optional) for v in checks), extra.name
        if extra.kind == "integer":
            assert field.field_class is IntegerField
            assert field.kwargs["default"] == extra.default
        elif isinstance(extra.default, bool):
            assert field.kwargs["default"] == str(extra.default).lower()
        elif extra.default is not None:
            assert field.kwargs["default"] == str(extra.default)
        if extra.choices:
            assert any(isinstance(v, validators.AnyOf) for v in checks), extra.name


def test_the_legacy_form_is_built_from_the_names_airflow_3_0_patches() -> None:
    """Airflow 3.0/3.1's API server swaps ``wtforms.StringField`` & co for stand-ins it can read."""
    from unittest import mock

    made: list[tuple[str, tuple[object, ...], dict[str, object]]] = []

    def stand_in(kind: str) -> object:
        def make(*args: object, **kwargs: object) -> str:
            made.append((kind, args, kwargs))
            return kind

        return make

    with (
        mock.patch("wtforms.StringField", stand_in("string")),
        mock.patch("wtforms.IntegerField", stand_in("integer")),
        mock.patch("wtforms.validators.Optional", lambda *a, **k: "optional"),
        mock.patch("wtforms.validators.any_of", lambda values: ("enum", tuple(values))),
    ):
        widgets = connection_form_widgets()
    assert set(widgets.values()) == {"string", "integer"}
    by_name = {args[0]: (kind, kwargs) for kind, args, kwargs in made}
    api_version = next(e for e in EXTRAS if e.name == "api_version")
    kind, kwargs = by_name[api_version.label]
    assert kind == "string" and kwargs["default"] == "v1"
    assert kwargs["validators"] == ["optional", ("enum", api_version.choices)]


def test_the_on_kill_notice_is_logged_only_where_airflow_never_calls_on_kill(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = logging.getLogger("test.trigger")
    with caplog.at_level(logging.INFO, logger="test.trigger"):
        monkeypatch.setattr(_compat, "TRIGGER_ON_KILL", True)
        assert _compat.note_trigger_on_kill(log) is True
        monkeypatch.setattr(_compat, "TRIGGER_ON_KILL", False)
        assert _compat.note_trigger_on_kill(log, wanted=False) is False
        assert not caplog.records
        assert _compat.note_trigger_on_kill(log) is False
    (record,) = caplog.records
    assert "does not call a trigger's on_kill (3.3+)" in record.getMessage()
    assert _compat.AIRFLOW_VERSION in record.getMessage()
