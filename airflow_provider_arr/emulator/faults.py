"""Fault injection: admin-defined rules, the throttling token bucket and the random error rate."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

OPERATIONS = ("create", "get", "list", "update", "stop", "token", "any")
ACTIONS = ("status", "drop", "delay", "lose_answer")


@dataclass
class FaultRule:
    """One rule of ``POST /_emulator/faults``.

    :param operation: the ARR operation it applies to (``token`` is the STS), or ``any``.
    :param action: ``status`` answers ``status``; ``drop`` closes the connection without an answer
        and without doing anything; ``lose_answer`` does the operation, then closes the connection
        without an answer; ``delay`` waits ``delay`` real seconds, then lets the call go on (to the
        next rule or the service).
    :param status: the HTTP status of a ``status`` rule (400 to 599).
    :param retry_after: seconds for a ``Retry-After`` header on a ``status`` answer, or ``None``.
    :param delay: real seconds of a ``delay`` rule.
    :param count: how many times the rule fires before it is removed; ``None`` for ever.
    :param probability: the chance that the rule fires on a matching call.
    """

    operation: str
    action: str
    status: int = 503
    retry_after: float | None = None
    delay: float = 1.0
    count: int | None = None
    probability: float = 1.0
    id: int = 0
    fired: int = 0

    @classmethod
    def from_json(cls, data: Any, rule_id: int) -> FaultRule:
        """Validate a rule as posted to the admin API.

        :raises ValueError: naming what is wrong.
        """
        if not isinstance(data, Mapping):
            raise ValueError("a fault rule must be a JSON object")
        known = {"operation", "action", "status", "retry_after", "delay", "count", "probability"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault field(s) {sorted(unknown)}; fields: {sorted(known)}")
        operation = data.get("operation", "any")
        if operation not in OPERATIONS:
            raise ValueError(f"operation must be one of {', '.join(OPERATIONS)}")
        action = data.get("action")
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {', '.join(ACTIONS)}")
        status = _number(data, "status", 503, integer=True)
        if not 400 <= status <= 599:
            raise ValueError("status must be between 400 and 599")
        retry_after = data.get("retry_after")
        if retry_after is not None:
            retry_after = _number(data, "retry_after", 0, minimum=0.0)
        count = data.get("count")
        if count is not None:
            count = _number(data, "count", 1, integer=True, minimum=1)
        return cls(
            operation=operation,
            action=action,
            status=int(status),
            retry_after=retry_after,
            delay=_number(data, "delay", 1.0, minimum=0.0),
            count=count,
            probability=_number(data, "probability", 1.0, minimum=0.0, maximum=1.0),
            id=rule_id,
        )

    def to_dict(self) -> dict[str, Any]:
        """The rule as JSON, with how often it has fired."""
        return {
            "id": self.id,
            "operation": self.operation,
            "action": self.action,
            "status": self.status,
            "retry_after": self.retry_after,
            "delay": self.delay,
            "count": self.count,
            "probability": self.probability,
            "fired": self.fired,
        }


def _number(
    data: Mapping[str, Any],
    name: str,
    default: float,
    *,
    integer: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
) -> Any:
    value = data.get(name, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number")
    if integer and value != int(value):
        raise ValueError(f"{name} must be an integer")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum:g}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum:g}")
    return int(value) if integer else float(value)


class Decision(NamedTuple):
    """What the rules say about one call: seconds to wait first, then the rule that takes it over."""

    delay: float
    rule: FaultRule | None


class FaultRules:
    """The ordered rule list. A call goes through every matching ``delay`` rule and stops at the
    first matching rule of another action."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._next_id = 1

    def __len__(self) -> int:
        return len(self._rules)

    def add(self, data: Any) -> FaultRule:
        """Validate and append a rule (see :meth:`FaultRule.from_json`)."""
        rule = FaultRule.from_json(data, self._next_id)
        self._next_id += 1
        self._rules.append(rule)
        return rule

    def clear(self) -> int:
        """Remove every rule; returns how many there were."""
        removed = len(self._rules)
        self._rules = []
        return removed

    def to_list(self) -> list[dict[str, Any]]:
        """The rules as JSON."""
        return [rule.to_dict() for rule in self._rules]

    def decide(self, operation: str, rng: random.Random) -> Decision:
        """Fire the rules that match ``operation``; a rule whose count runs out is removed."""
        if not self._rules:
            return Decision(0.0, None)
        delay = 0.0
        for rule in list(self._rules):
            if rule.operation not in (operation, "any"):
                continue
            if rule.probability < 1.0 and rng.random() >= rule.probability:
                continue
            rule.fired += 1
            if rule.count is not None and rule.fired >= rule.count:
                self._rules.remove(rule)
            if rule.action == "delay":
                delay += rule.delay
                continue
            return Decision(delay, rule)
        return Decision(delay, None)


class TokenBucket:
    """``rate`` requests per second on average, bursts of up to ``burst``."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.updated = now

    def take(self, now: float) -> float:
        """Take one token: 0 if the call may go on, else the seconds until a token is available."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate
