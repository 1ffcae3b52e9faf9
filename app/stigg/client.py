"""Stigg's GraphQL API through gql, with our own retry policy and a per-request deadline.

The gql transport's retries are off: whether a call may be repeated depends on the
operation (see `operations.Resend`), which only this module knows. One gql session per
thread, because a gql session is not safe to share between threads.
"""

from __future__ import annotations

import email.utils
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

import requests
from gql import Client, GraphQLRequest
from gql.transport.exceptions import (
    TransportConnectionFailed,
    TransportProtocolError,
    TransportQueryError,
)
from gql.transport.requests import RequestsHTTPTransport
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)
from urllib3.exceptions import NewConnectionError

from app import metrics
from app.stigg import errors
from app.stigg.errors import StiggFailure
from app.stigg.operations import Operation, Resend, load_operations
from app.stigg.rate_limit import Permit, RateBudgetExhausted, RateLimiter

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 4
# Below this much time left, an attempt cannot succeed; fail fast instead.
MIN_ATTEMPT_S = 0.05
# Servers close a keep-alive connection that sat idle for a while (the sandbox's gunicorn
# after 2 s, load balancers after a minute or so). A request written on one just as it
# closes is lost without an answer, and Stigg may or may not have run it. Reads and upserts
# are resent, creations looked up; a workflow trigger can be neither
# (WORKFLOW_OUTCOME_UNKNOWN), so it goes out on a new connection after this much idle time.
FRESH_CONNECTION_AFTER_IDLE_S = 1.0


class _UpstreamHTTPError(Exception):
    def __init__(self, status: int, body: object, retry_after_s: float | None):
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body
        self.retry_after_s = retry_after_s


class _StatusAwareTransport(RequestsHTTPTransport):
    """gql drops the HTTP status when an error body is JSON; we need it (401, 429, 5xx).

    The environment's proxy and CA settings are read once, when the session opens, not on
    every call (requests' per-call look-up walked os.environ: a tenth of a request's CPU).
    """

    def connect(self):
        super().connect()
        session = self.session
        proxies = requests.utils.get_environ_proxies(self.url)
        ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        session.trust_env = False
        session.proxies.update(proxies)
        if ca_bundle and self.verify is True:
            self.verify = ca_bundle

    def _prepare_result(self, response: requests.Response):
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = None
            raise _UpstreamHTTPError(
                response.status_code, body, parse_retry_after(response.headers.get("Retry-After"))
            )
        return super()._prepare_result(response)


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class _PrintedRequest(GraphQLRequest):
    """A request whose query text was printed once, at start-up."""

    def __init__(self, operation: Operation, variables: dict):
        super().__init__(
            operation.document, variable_values=variables, operation_name=operation.name
        )
        self._query = operation.query

    @property
    def payload(self) -> dict:
        return {
            "query": self._query,
            "operationName": self.operation_name,
            "variables": self.variable_values,
        }


class StiggClient:
    """Long-lived: one per app. `session()` gives the per-request view with its deadline."""

    def __init__(
        self,
        *,
        api_url: str,
        api_key: str,
        timeout_s: float,
        deadline_s: float,
        customer_url_template: str,
        subscription_url_template: str,
        rate_limiter: RateLimiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.api_url = api_url
        self._headers = {"X-API-KEY": api_key, "X-API-VERSION": "1"}
        self.timeout_s = timeout_s
        self.deadline_s = deadline_s
        self.customer_url_template = customer_url_template
        self.subscription_url_template = subscription_url_template
        self.operations = load_operations()
        # Every attempt takes a permit from it first (app/stigg/rate_limit.py).
        self.rate_limiter = rate_limiter or RateLimiter.disabled()
        self._sleep = sleep
        self._local = threading.local()
        # The last attempt of any thread of this process (None before the first).
        self.last_call: LastCall | None = None

    def session(self, *, budget_wait_s: float | None = None) -> StiggSession:
        """Stigg calls that share one deadline of STIGG_DEADLINE_S.

        `budget_wait_s`: None, and waiting for rate budget eats into that deadline (a single
        action, whose caller is waiting). A number, and the session may wait that long in
        total for budget, its deadline moving on by each wait (a batch item).
        """
        return StiggSession(
            self, deadline=time.monotonic() + self.deadline_s, budget_wait_s=budget_wait_s
        )

    def customer_url(self, customer_id: str) -> str:
        return self.customer_url_template.replace("{customerId}", quote(customer_id, safe=""))

    def subscription_url(self, subscription_id: str) -> str:
        return self.subscription_url_template.replace(
            "{subscriptionId}", quote(subscription_id, safe="")
        )

    def _gql_session(self, operation: Operation):
        """This thread's session: one keep-alive connection to Stigg, reused, except that
        a call whose lost answer is final goes out on a new connection when this one sat
        idle FRESH_CONNECTION_AFTER_IDLE_S or more."""
        local = self._local
        session = getattr(local, "session", None)
        if session is None:
            transport = _StatusAwareTransport(
                url=self.api_url, headers=self._headers, timeout=self.timeout_s, retries=0
            )
            session = Client(transport=transport, fetch_schema_from_transport=False).connect_sync()
            local.session = session
        elif (
            operation.lost_answer_is_final
            and time.monotonic() - local.last_used >= FRESH_CONNECTION_AFTER_IDLE_S
        ):
            # requests' Session.close drops the pooled connections; the next call opens one.
            session.transport.session.close()
        return session

    def attempt(self, operation: Operation, variables: dict, timeout_s: float) -> dict:
        """One HTTP round trip; every failure comes out as a StiggFailure, its
        `attempt_result` saying how the attempt ended."""
        session = self._gql_session(operation)
        try:
            data = session.execute(_PrintedRequest(operation, variables), timeout=timeout_s)
        except TransportQueryError as exc:
            graphql_errors = exc.errors or [{"message": str(exc)}]
            failure = errors.from_graphql_errors(graphql_errors)
            raise _ended(failure, metrics.graphql_result(_first_code(graphql_errors))) from exc
        except _UpstreamHTTPError as exc:
            failure = errors.from_http_status(exc.status, exc.body, exc.retry_after_s)
            raise _ended(failure, metrics.http_result(exc.status)) from exc
        except TransportProtocolError as exc:
            failure = errors.bad_response("the answer was not a GraphQL JSON document")
            raise _ended(failure, metrics.BAD_RESPONSE) from exc
        except TransportConnectionFailed as exc:
            raise _connection_failure(exc.__cause__) from exc
        finally:
            # When the connection was last used: idle time counts from the answer.
            self._local.last_used = time.monotonic()
        if not isinstance(data, dict) or operation.result_key not in data:
            failure = errors.bad_response(f"no {operation.result_key} in the answer")
            raise _ended(failure, metrics.BAD_RESPONSE)
        if data[operation.result_key] is None and operation.is_mutation:
            failure = errors.bad_response(f"{operation.result_key} came back empty")
            raise _ended(failure, metrics.BAD_RESPONSE)
        return data


@dataclass(frozen=True)
class LastCall:
    """The last attempt this process sent to Stigg, for /readyz (information only)."""

    stigg_operation: str
    result: str
    # time.monotonic() and the wall clock when its answer (or failure) came.
    at: float
    at_utc: datetime

    def age_s(self) -> float:
        return max(0.0, time.monotonic() - self.at)


def _ended(failure: StiggFailure, result: str) -> StiggFailure:
    failure.attempt_result = result
    return failure


def _first_code(graphql_errors: list) -> str | None:
    first = graphql_errors[0] if graphql_errors else None
    extensions = first.get("extensions") if isinstance(first, dict) else None
    code = extensions.get("code") if isinstance(extensions, dict) else None
    return code if isinstance(code, str) else None


def _connection_failure(cause: BaseException | None) -> StiggFailure:
    if isinstance(cause, requests.ConnectTimeout):
        failure = errors.unavailable("could not connect", may_have_executed=False)
        return _ended(failure, metrics.TIMEOUT)
    if _is_refused(cause):
        failure = errors.unavailable("could not connect", may_have_executed=False)
        return _ended(failure, metrics.CONNECTION_ERROR)
    if isinstance(cause, requests.Timeout):
        return _ended(errors.timed_out("no answer within STIGG_TIMEOUT_S"), metrics.TIMEOUT)
    failure = errors.unavailable("the connection broke before an answer", may_have_executed=True)
    return _ended(failure, metrics.CONNECTION_ERROR)


def _is_refused(cause: BaseException | None) -> bool:
    """requests nests urllib3's reason a few levels deep; look through the chain."""
    pending, seen = [cause], set()
    while pending:
        exc = pending.pop()
        if not isinstance(exc, BaseException) or id(exc) in seen:
            continue
        seen.add(id(exc))
        if isinstance(exc, NewConnectionError | ConnectionRefusedError):
            return True
        pending.extend([getattr(exc, "reason", None), exc.__cause__, exc.__context__, *exc.args])
    return False


class StiggSession:
    """What an action sees: Stigg calls that share one request's deadline."""

    def __init__(self, client: StiggClient, *, deadline: float, budget_wait_s: float | None = None):
        self._client = client
        self._deadline = deadline
        self._budget_wait_s = budget_wait_s
        self.attempts = 0
        # Time spent waiting for rate budget, over all attempts (for metrics).
        self.budget_wait_s_spent = 0.0

    def customer_url(self, customer_id: str) -> str:
        return self._client.customer_url(customer_id)

    def subscription_url(self, subscription_id: str) -> str:
        return self._client.subscription_url(subscription_id)

    def remaining_s(self) -> float:
        return self._deadline - time.monotonic()

    def execute(self, operation_name: str, variables: dict) -> dict:
        """Run one operation (retrying where that is safe) and return its result field."""
        operation = self._client.operations[operation_name]
        customer_id = _customer_of(operation, variables)
        try:
            try:
                # Most calls succeed at once: the retry policy is only built for a failure
                # it may resend (it cost a tenth of a call's overhead, bench/README.md).
                data = self._attempt(operation, variables, customer_id)
            except StiggFailure as failure:
                if not _may_resend(operation, failure):
                    raise
                data = self._retry(operation, variables, customer_id, failure)
        except RateBudgetExhausted as exhausted:
            # Our own limiter already waited all it could: retrying would not help.
            metrics.rate_limit_exhausted(stigg_operation=operation.field_name)
            raise errors.rate_limited(exhausted.retry_after_s) from exhausted
        return data[operation.result_key]

    def _retry(
        self,
        operation: Operation,
        variables: dict,
        customer_id: str | None,
        first_failure: StiggFailure,
    ) -> dict:
        """The policy, from the first attempt's failure on: tenacity sees that failure as
        its own first attempt (the same waits, stops and log lines as when it ran it)."""
        unreported = [first_failure]

        def attempt(*args) -> dict:
            if unreported:
                raise unreported.pop()
            return self._attempt(*args)

        retrying = Retrying(
            retry=retry_if_exception(lambda exc: _may_resend(operation, exc)),
            wait=self._wait,
            stop=stop_after_attempt(MAX_ATTEMPTS) | self._out_of_time,
            sleep=self._client._sleep,
            before_sleep=lambda state: self._before_retry(state, operation, customer_id),
            reraise=True,
        )
        return retrying(attempt, operation, variables, customer_id)

    def _attempt(self, operation: Operation, variables: dict, customer_id: str | None) -> dict:
        remaining = self.remaining_s()
        if remaining < MIN_ATTEMPT_S:
            raise errors.timed_out("STIGG_DEADLINE_S used up before the call")
        permit = self._permit(operation, customer_id)
        remaining = self.remaining_s()
        if remaining < MIN_ATTEMPT_S:
            permit.done()
            raise errors.timed_out("STIGG_DEADLINE_S used up waiting for rate budget")
        self.attempts += 1
        started = time.monotonic()
        outcome = "ok"
        result = "ok"
        try:
            return self._client.attempt(
                operation, variables, min(self._client.timeout_s, remaining)
            )
        except StiggFailure as failure:
            outcome = failure.stigg_error_code or failure.code
            result = failure.attempt_result or failure.code
            if failure.code == "STIGG_RATE_LIMITED":
                # Stigg's own 429 (HTTP or RateLimitExceeded); our limiter's own refusal
                # never gets here.
                self._client.rate_limiter.stigg_rate_limited(operation.field_name)
            raise
        finally:
            permit.done()
            ended = time.monotonic()
            metrics.stigg_call(
                stigg_operation=operation.field_name, result=result, duration_s=ended - started
            )
            self._client.last_call = LastCall(
                operation.field_name, result, ended, datetime.now(UTC)
            )
            # One line per attempt, so a retried call shows each try and why it failed; a
            # plain success is DEBUG (the request's outcome line and the metrics count it).
            log.log(
                logging.INFO if outcome != "ok" or permit.waited_s else logging.DEBUG,
                "Stigg call",
                extra={
                    "operation": operation.name,
                    "attempt": self.attempts,
                    "outcome": outcome,
                    "duration_ms": _ms_since(started),
                    "budget_wait_ms": int(permit.waited_s * 1000) or None,
                },
            )

    def _permit(self, operation: Operation, customer_id: str | None) -> Permit:
        """Wait for rate budget: within the deadline, or within `budget_wait_s` (then the
        deadline moves on by the wait)."""
        if self._budget_wait_s is None:
            # Leave time for the call itself.
            timeout_s = self.remaining_s() - 2 * MIN_ATTEMPT_S
        else:
            timeout_s = self._budget_wait_s - self.budget_wait_s_spent
        limiter = self._client.rate_limiter
        permit = limiter.acquire(operation.field_name, customer_id, timeout_s=max(0.0, timeout_s))
        if limiter.enabled:
            metrics.rate_limit_wait(stigg_operation=operation.field_name, waited_s=permit.waited_s)
        self.budget_wait_s_spent += permit.waited_s
        if self._budget_wait_s is not None:
            self._deadline += permit.waited_s
        return permit

    # 0.2 s, 0.4 s, 0.8 s ... capped at 5 s, plus up to 0.3 s of jitter so that workers
    # retrying the same outage do not hit Stigg in lockstep.
    _backoff = wait_exponential(multiplier=0.2, max=5.0) + wait_random(0, 0.3)

    def _wait(self, state: RetryCallState) -> float:
        delay = self._backoff(state)
        failure = state.outcome.exception() if state.outcome else None
        retry_after = getattr(failure, "retry_after_s", None)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay

    def _before_retry(
        self, state: RetryCallState, operation: Operation, customer_id: str | None
    ) -> None:
        failure = state.outcome.exception() if state.outcome else None
        metrics.stigg_retry(
            stigg_operation=operation.field_name, code=getattr(failure, "code", "UNKNOWN")
        )
        log.warning(
            "retrying Stigg call",
            extra={
                "operation": operation.name,
                "attempt": state.attempt_number,
                "error_code": getattr(failure, "code", None),
            },
        )
        if getattr(failure, "code", None) == "STIGG_RATE_LIMITED":
            # Stigg said 429: everyone sharing this call's windows pauses while it backs
            # off; then its retry takes a permit again like any other call.
            self._client.rate_limiter.cool_down(
                operation.field_name, customer_id, seconds=state.upcoming_sleep
            )

    def _out_of_time(self, state: RetryCallState) -> bool:
        # Stop when the next wait would leave no time for the attempt after it.
        upcoming = state.upcoming_sleep or 0.0
        return self.remaining_s() - upcoming < MIN_ATTEMPT_S * 2


# Where the input of a mutation of one subscription (update, cancel), which names no
# customer, names the subscription: Stigg's REST limits key subscription calls by it.
_SUBSCRIPTION_FIELDS = ("subscriptionId", "subscriptionRefId")


def _customer_of(operation: Operation, variables: dict) -> str | None:
    """The entity a mutation counts against in Stigg's per-entity limit: its customer, or
    `subscription:<id>` for the one subscription it changes; None for reads and for a
    mutation naming neither (triggerWorkflow)."""
    given = variables.get("input")
    if not operation.is_mutation or not isinstance(given, dict):
        return None
    if isinstance(given.get("customerId"), str):
        return given["customerId"]
    for name in _SUBSCRIPTION_FIELDS:
        if isinstance(given.get(name), str):
            return f"subscription:{given[name]}"
    return None


def _may_resend(operation: Operation, exc: BaseException) -> bool:
    if not isinstance(exc, StiggFailure) or not exc.retryable:
        return False
    return operation.resend is Resend.ALWAYS or not exc.may_have_executed


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
