"""Which failures are worth a retry: transient infrastructure errors only (quota, 5xx, connection
resets, a warehouse briefly locked), never a failing data test, bad data, or a Dataflow job that
ran and failed (a retry would relaunch the whole job on the same input)."""
from __future__ import annotations

import re
from typing import Any

from google.api_core import exceptions as gexc

from flows.batch import DataflowJobFailed
from flows.dbt import DbtFailure

TRANSIENT = (
    gexc.ServiceUnavailable,  # 503
    gexc.InternalServerError,  # 500
    gexc.BadGateway,  # 502
    gexc.GatewayTimeout,  # 504
    gexc.TooManyRequests,  # 429, launch quota
    gexc.ResourceExhausted,  # quota
    gexc.DeadlineExceeded,
    ConnectionError,
)
# outcomes that say the work ran and its result is wrong: a retry would only repeat them
FINAL = (DataflowJobFailed,)

# a dbt node that errored on the warehouse's side, not on the project's SQL or data: BigQuery's
# retryable error reasons and HTTP statuses, a dropped connection, DuckDB's file lock held by
# another process
TRANSIENT_DBT_ERROR = re.compile(
    r"backendError|internalError|rateLimitExceeded|jobRateLimitExceeded|quotaExceeded|"
    r"\b(500|502|503|504) |Service Unavailable|Connection (reset|aborted)|Could not set lock on file",
    re.I)


def dbt_failure_is_transient(failure: DbtFailure) -> bool:
    """Only when every failing node errored (no data test failed) with a transient error, or, when
    dbt stopped before any node (its connection at start), its error says so."""
    if failure.nodes:
        return all(n.status == "error" and TRANSIENT_DBT_ERROR.search(n.message or "") for n in failure.nodes)
    return any(TRANSIENT_DBT_ERROR.search(line) for line in failure.errors)


def is_transient(exc: BaseException | None) -> bool:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:  # look through wrapped causes
        if isinstance(exc, DbtFailure):
            return dbt_failure_is_transient(exc)
        if isinstance(exc, FINAL):
            return False
        if isinstance(exc, TRANSIENT):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry only when the task failed on a transient error."""
    try:
        state.result()
    except BaseException as exc:  # the task's own exception is re-raised here
        return is_transient(exc)
    return False
