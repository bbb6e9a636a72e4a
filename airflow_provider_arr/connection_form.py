"""The ARR connection form: every field and extra the client reads, declared once.

``get_provider_info()`` (the declarative form of Airflow >= 3.2), the hook's
``get_ui_field_behaviour()`` / ``get_connection_form_widgets()`` (older Airflow) and the client's
configuration all read this module, so the form, the docs and the client cannot drift apart.
Import-light on purpose: Airflow reads it while discovering providers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CONN_TYPE = "azure_remote_rendering"
DEFAULT_CONN_ID = "arr_default"
HOOK_NAME = "Azure Remote Rendering"
#: The prefix older Airflow versions give form extras in the stored JSON.
LEGACY_EXTRA_PREFIX = f"extra__{CONN_TYPE}__"

HIDDEN_FIELDS = ["schema", "port"]
RELABELING = {"login": "Account ID", "password": "Account Key", "host": "Service endpoint URL"}
PLACEHOLDERS = {
    "login": "00000000-0000-0000-0000-000000000000",
    "host": "https://remoterendering.westus2.mixedreality.azure.com (or leave empty and set Region)",
}


@dataclass(frozen=True)
class Extra:
    """One connection extra the client reads.

    :param name: the key in the connection's extra JSON.
    :param kind: ``string``, ``number``, ``integer`` or ``boolean-or-string`` (``verify``).
    :param default: the value used when the extra is absent (None: no default, see description).
    """

    name: str
    label: str
    description: str
    kind: str = "string"
    default: Any = None
    choices: tuple[str, ...] | None = None

    def json_schema(self) -> dict[str, Any]:
        """The JSON schema of the field for the declarative form."""
        types = {
            "string": ["string", "null"],
            "number": ["number", "null"],
            "integer": ["integer", "null"],
            "boolean-or-string": ["boolean", "string", "null"],
        }[self.kind]
        schema: dict[str, Any] = {"type": types}
        if self.choices:
            schema = {"type": "string", "enum": list(self.choices)}
        if self.default is not None:
            schema["default"] = self.default
        return schema


EXTRAS: tuple[Extra, ...] = (
    Extra(
        "region",
        "Region",
        "Builds the service endpoint when the host is empty, e.g. westus2.",
    ),
    Extra(
        "account_domain",
        "Account domain",
        "The account's domain, e.g. westus2.mixedreality.azure.com; the STS is https://sts.{domain}.",
    ),
    Extra(
        "sts_endpoint",
        "STS endpoint",
        "Base URL of the Secure Token Service (overrides the account domain).",
    ),
    Extra(
        "api_version",
        "API version",
        "v1 (default) or 2021-01-01 (client-chosen ids, idempotent create).",
        default="v1",
        choices=("v1", "2021-01-01"),
    ),
    Extra("timeout", "Request timeout (s)", "Seconds for one HTTP request.", kind="number", default=30),
    Extra(
        "retry_limit",
        "Attempts per call",
        "Attempts of one call failing with 5xx or a broken connection, the first included.",
        kind="integer",
        default=6,
    ),
    Extra(
        "retry_wait_min",
        "First retry wait (s)",
        "First backoff after a failed attempt; doubled each time, with full jitter.",
        kind="number",
        default=1,
    ),
    Extra(
        "retry_wait_max",
        "Longest retry wait (s)",
        "Longest single wait between attempts, Retry-After included.",
        kind="number",
        default=30,
    ),
    Extra(
        "retry_total_timeout",
        "Retry budget (s)",
        "Give up retrying one call after a 5xx or a broken connection after this many seconds.",
        kind="number",
        default=180,
    ),
    Extra(
        "price_per_hour",
        "Price per session-hour",
        "What one session costs per hour; the orphan sweep reports the cost it ends (optional).",
        kind="number",
    ),
    Extra(
        "throttle_timeout",
        "Throttle budget (s)",
        "How long a call waits out 429 answers before failing (a wait uses its own deadline).",
        kind="number",
        default=300,
    ),
    Extra(
        "stop_timeout",
        "Stop budget (s)",
        "How long a stop keeps trying through 5xx, 429 and broken connections before it fails.",
        kind="number",
        default=600,
    ),
    Extra(
        "rate_limit",
        "Calls per second",
        "The account's call rate (the service's rule: one call per 5 s); this process paces "
        "10 % under it, slows down after a 429 and recovers after successes.",
        kind="number",
        default=0.2,
    ),
    Extra(
        "rate_burst",
        "Burst",
        "Calls that may go at once before the rate applies.",
        kind="integer",
        default=5,
    ),
    Extra(
        "verify",
        "TLS verification",
        "true (default), false, or the path of a CA bundle to trust.",
        kind="boolean-or-string",
        default=True,
    ),
)

EXTRA_NAMES: frozenset[str] = frozenset(e.name for e in EXTRAS)


def ui_field_behaviour() -> dict[str, Any]:
    """The hook's ``get_ui_field_behaviour()`` answer (snake_case keys)."""
    return {
        "hidden_fields": list(HIDDEN_FIELDS),
        "relabeling": dict(RELABELING),
        "placeholders": dict(PLACEHOLDERS),
    }


def provider_connection_type() -> dict[str, Any]:
    """The ``connection-types`` entry of ``get_provider_info()`` (the declarative form)."""
    return {
        "connection-type": CONN_TYPE,
        "hook-class-name": "airflow_provider_arr.hooks.arr.ArrHook",
        "hook-name": HOOK_NAME,
        "ui-field-behaviour": {
            "hidden-fields": list(HIDDEN_FIELDS),
            "relabeling": dict(RELABELING),
            "placeholders": dict(PLACEHOLDERS),
        },
        "conn-fields": {
            e.name: {"label": e.label, "description": e.description, "schema": e.json_schema()}
            for e in EXTRAS
        },
    }


def connection_form_widgets() -> dict[str, Any]:
    """The hook's ``get_connection_form_widgets()`` answer, for Airflow < 3.2 (wtforms fields).

    Airflow 3.0 and 3.1 build the connection form from wtforms fields: their API server replaces
    wtforms' ``StringField``/``IntegerField`` and ``Optional``/``any_of`` by stand-ins that it turns
    into the form's JSON schema, so the fields are made here at call time, from wtforms'
    top-level names, with no flask_appbuilder widget (there is no Flask form to render them in).
    Airflow >= 3.2 reads ``conn-fields`` instead and never calls this. Without wtforms installed
    (it comes with the FAB provider) this raises ImportError, which Airflow takes as "no widgets".
    """
    import wtforms
    from wtforms import validators

    fields: dict[str, Any] = {}
    for extra in EXTRAS:
        checks: list[Any] = [validators.Optional()]
        if extra.choices:
            checks.append(validators.any_of(list(extra.choices)))
        field_class = wtforms.IntegerField if extra.kind == "integer" else wtforms.StringField
        default = None if extra.default is None else extra.default
        if field_class is wtforms.StringField and default is not None:
            default = str(default).lower() if isinstance(default, bool) else str(default)
        fields[extra.name] = field_class(
            extra.label, validators=checks, description=extra.description, default=default
        )
    return fields
