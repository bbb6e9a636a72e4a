"""Which failed calls are repeated, how long to wait between attempts, and for how long in all.

One policy for both transports: the sync driver gives these arguments to tenacity's
``Retrying``, the async one to ``AsyncRetrying``.

* A **429** was not processed, so any call is repeated, a v1 create included, with jittered
  backoff that honours ``Retry-After``, for a time budget (``throttle_timeout``) rather than a
  number of attempts; a wait (trigger, sensor) uses its own deadline instead.
* A **5xx** or a **broken connection** is repeated when the call is safe to repeat (everything
  but a v1 create whose request may have reached the service), for ``retry_limit`` attempts and
  ``retry_total_timeout`` seconds. A stop keeps trying for ``stop_timeout`` seconds instead.
* Anything else fails at once: 400, 401 (after one token refresh), 403, 404, 409, 422, and the
  connection failures no retry can fix (a host that does not resolve, a certificate that does
  not verify, a malformed URL).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any

from tenacity import RetryCallState, retry_if_exception, wait_random_exponential
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from airflow_provider_arr.client.messages import ApiRequest, LogLike
from airflow_provider_arr.exceptions import (
    ArrConnectionError,
    ArrInputError,
    ArrServiceError,
    ArrThrottledError,
)

#: Attempts of a call whose budget is in seconds alone (a stop).
UNLIMITED_ATTEMPTS = 1_000_000


@dataclass(frozen=True)
class RetrySettings:
    """How a failed call is retried.

    :param attempts: attempts after a 5xx or a broken connection, the first included.
    :param wait_min: first backoff, in seconds (doubled each time, with full jitter).
    :param wait_max: longest single wait, Retry-After included.
    :param total: seconds after which a call failing with 5xx or broken connections gives up.
    :param throttle_timeout: seconds during which 429 answers are waited out.
    :param stop_timeout: seconds during which a stop keeps trying through 5xx, broken
        connections and 429s.
    """

    attempts: int = 6
    wait_min: float = 1.0
    wait_max: float = 30.0
    total: float = 180.0
    throttle_timeout: float = 300.0
    stop_timeout: float = 600.0
    #: What the 429 budget is, in the words of an error that says it is spent.
    budget: str = "the throttle budget (the connection's extra 'throttle_timeout')"

    def __post_init__(self) -> None:
        checks = (
            ("retry_limit", self.attempts, isinstance(self.attempts, int) and self.attempts >= 1),
            ("retry_wait_min", self.wait_min, self.wait_min >= 0),
            ("retry_wait_max", self.wait_max, self.wait_max >= self.wait_min),
            ("retry_total_timeout", self.total, self.total > 0),
            ("throttle_timeout", self.throttle_timeout, self.throttle_timeout >= 0),
            ("stop_timeout", self.stop_timeout, self.stop_timeout > 0),
        )
        for name, value, ok in checks:
            if not ok:
                raise ArrInputError(f"{name} is invalid: {value!r}")

    def for_stop(self) -> RetrySettings:
        """The policy of a stop: it keeps trying through everything transient, for ``stop_timeout``."""
        return replace(
            self,
            attempts=UNLIMITED_ATTEMPTS,
            total=self.stop_timeout,
            throttle_timeout=self.stop_timeout,
            budget="the stop budget (the connection's extra 'stop_timeout')",
        )

    def until(self, seconds_left: float) -> RetrySettings:
        """The policy of a call made by a wait: 429s are waited out until the wait's deadline."""
        return replace(
            self, throttle_timeout=max(0.0, seconds_left), budget="the wait's time to its deadline"
        )


@dataclass
class CallStats:
    """What one client's calls cost, for the end-of-task summary and benchmarks."""

    calls: int = 0
    throttled: int = 0
    retry_wait: float = 0.0
    paced: float = 0.0

    def summary(self) -> str:
        """One line for the task log."""
        return (
            f"{self.calls} ARR call(s), {self.throttled} answer(s) 429 waited out, "
            f"{self.paced:.1f} s waiting for the account's rate, {self.retry_wait:.1f} s before retries"
        )


class wait_retry_after(wait_base):
    """Wait what the service's Retry-After asks (capped), else fall back to jittered backoff.

    A paced call (every session call; the STS is not paced) that was throttled waits only a
    moment's jitter here: the account's pacer has already taken the 429 (and its Retry-After)
    into account, and holds the next attempt until its turn.
    """

    def __init__(self, fallback: wait_base, cap: float, *, paced: bool = False) -> None:
        self.fallback = fallback
        self.cap = cap
        self.paced = paced

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if self.paced and isinstance(exc, ArrThrottledError):
            return random.uniform(0, 1.0)
        advised = getattr(exc, "retry_after", None)
        if advised is not None:
            # A little jitter so that many waiting clients do not come back in the same instant.
            return min(self.cap, advised + random.uniform(0, min(1.0, 0.1 * advised)))
        return float(self.fallback(retry_state))


class stop_when_spent(stop_base):
    """Stop once the budget of the failure at hand is spent: seconds for 429s, attempts and
    seconds for the rest (a wait that would end past the budget is not started)."""

    def __init__(self, settings: RetrySettings) -> None:
        self.settings = settings
        self.throttled = 0  # attempts that were throttled: answered 429, or not sent for want of a turn
        self.answered_429 = 0
        self.last_answer: BaseException | None = None  # the last failure the service itself gave

    def __call__(self, retry_state: RetryCallState) -> bool:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        ends_at = (retry_state.seconds_since_start or 0.0) + (retry_state.upcoming_sleep or 0.0)
        if not _not_sent_for_want_of_a_turn(exc):
            self.last_answer = exc
        if isinstance(exc, ArrThrottledError):
            self.throttled += 1
            self.answered_429 += exc.http_status == 429
            return ends_at > self.settings.throttle_timeout
        other_attempts = retry_state.attempt_number - self.throttled
        return other_attempts >= self.settings.attempts or ends_at > self.settings.total


def _not_sent_for_want_of_a_turn(exc: BaseException | None) -> bool:
    """A throttled attempt the account's pacer did not send (no answer, so no status)."""
    return isinstance(exc, ArrThrottledError) and exc.http_status is None


def is_retryable(exc: BaseException, request: ApiRequest) -> bool:
    """Decide whether a failed attempt may be repeated without risking a duplicate effect."""
    if isinstance(exc, ArrThrottledError):
        return True  # a 429 was not processed
    if isinstance(exc, ArrServiceError):
        return request.retry_safe
    if isinstance(exc, ArrConnectionError):
        return not exc.permanent and (request.retry_safe or not exc.request_sent)
    return False


def retry_kwargs(
    settings: RetrySettings, request: ApiRequest, log: LogLike, stats: CallStats | None = None
) -> dict[str, Any]:
    """Keyword arguments for tenacity's ``Retrying`` or ``AsyncRetrying``, identical for both."""
    stats = stats if stats is not None else CallStats()
    stop = stop_when_spent(settings)

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        stats.retry_wait += wait
        if isinstance(exc, ArrThrottledError):
            stats.throttled += exc.http_status == 429
            left = settings.throttle_timeout - (state.seconds_since_start or 0.0)
            said = f"429 #{stop.answered_429}" if exc.http_status == 429 else "no turn yet"
            log.warning(
                "ARR %s %s throttled (%s); retrying in %.1f s (%.0f s of budget left)",
                request.method,
                request.path,
                said,
                wait,
                left,
            )
            return
        log.warning(
            "ARR %s %s failed (attempt %d of %d): %s; retrying in %.1f s",
            request.method,
            request.path,
            state.attempt_number - stop.throttled,
            settings.attempts,
            exc,
            wait,
        )

    def give_up(state: RetryCallState) -> Any:
        exc = state.outcome.exception() if state.outcome else None
        if _not_sent_for_want_of_a_turn(exc) and stop.last_answer is not None:
            exc = stop.last_answer  # the budget ran out waiting for a turn: the cause is the last answer
        if isinstance(exc, ArrThrottledError):
            waited = state.seconds_since_start or 0.0
            raise ArrThrottledError(
                f"{exc.message}; still throttled after {waited:.0f} s and {stop.answered_429} answer(s) "
                f"429 ({settings.budget} of {settings.throttle_timeout:.0f} s spent)",
                retry_after=exc.retry_after,
                waited=waited,
                throttled=stop.answered_429,
                **exc.details(),
            )
        assert exc is not None
        raise exc

    return {
        "retry": retry_if_exception(lambda exc: is_retryable(exc, request)),
        "wait": wait_retry_after(
            wait_random_exponential(multiplier=settings.wait_min, max=settings.wait_max),
            settings.wait_max,
            paced=request.authenticated,
        ),
        "stop": stop,
        "retry_error_callback": give_up,
        "before_sleep": before_sleep,
    }
