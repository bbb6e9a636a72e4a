"""Which failed calls are repeated, how long to wait between attempts, and for how long in all.

One policy for both transports: the sync driver gives these arguments to tenacity's
``Retrying``, the async one to ``AsyncRetrying``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from tenacity import (
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)
from tenacity.wait import wait_base

from airflow_provider_arr.client.messages import ApiRequest, LogLike
from airflow_provider_arr.exceptions import (
    ArrConnectionError,
    ArrInputError,
    ArrServiceError,
    ArrThrottledError,
)


@dataclass(frozen=True)
class RetrySettings:
    """How a failed call is retried: 429, 5xx and broken connections, with backoff and jitter.

    :param attempts: attempts in all, the first included.
    :param wait_min: first backoff, in seconds (doubled each time, with full jitter).
    :param wait_max: longest single wait, Retry-After included.
    :param total: give up rather than start a wait that would end past this many seconds.
    """

    attempts: int = 6
    wait_min: float = 1.0
    wait_max: float = 30.0
    total: float = 180.0

    def __post_init__(self) -> None:
        checks = (
            ("retry_limit", self.attempts, self.attempts >= 1 and isinstance(self.attempts, int)),
            ("retry_wait_min", self.wait_min, self.wait_min >= 0),
            ("retry_wait_max", self.wait_max, self.wait_max >= self.wait_min),
            ("retry_total_timeout", self.total, self.total > 0),
        )
        for name, value, ok in checks:
            if not ok:
                raise ArrInputError(f"{name} is invalid: {value!r}")


class wait_retry_after(wait_base):
    """Wait what the service's Retry-After asks (capped), else fall back to jittered backoff."""

    def __init__(self, fallback: wait_base, cap: float) -> None:
        self.fallback = fallback
        self.cap = cap

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        advised = getattr(exc, "retry_after", None)
        if advised is not None:
            # A little jitter so that many waiting clients do not come back in the same instant.
            return min(self.cap, advised + random.uniform(0, min(1.0, 0.1 * advised)))
        return float(self.fallback(retry_state))


def is_retryable(exc: BaseException, request: ApiRequest) -> bool:
    """Decide whether a failed attempt may be repeated without risking a duplicate effect."""
    if isinstance(exc, ArrThrottledError):
        return True  # a 429 was not processed
    if isinstance(exc, ArrServiceError):
        return request.retry_safe
    if isinstance(exc, ArrConnectionError):
        return request.retry_safe or not exc.request_sent
    return False


def retry_kwargs(settings: RetrySettings, request: ApiRequest, log: LogLike) -> dict[str, Any]:
    """Keyword arguments for tenacity's ``Retrying`` or ``AsyncRetrying``, identical for both."""

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "ARR %s %s failed (attempt %d of %d): %s; retrying in %.1f s",
            request.method,
            request.path,
            state.attempt_number,
            settings.attempts,
            exc,
            wait,
        )

    return {
        "retry": retry_if_exception(lambda exc: is_retryable(exc, request)),
        "wait": wait_retry_after(
            wait_random_exponential(multiplier=settings.wait_min, max=settings.wait_max), settings.wait_max
        ),
        "stop": stop_after_attempt(settings.attempts) | stop_before_delay(settings.total),
        "reraise": True,
        "before_sleep": before_sleep,
    }
