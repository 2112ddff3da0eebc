"""Which failures are worth a task retry: transient infrastructure errors only (quota, 5xx,
connection resets), never a failing dbt test or bad data."""
from __future__ import annotations

from typing import Any

from google.api_core import exceptions as gexc

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


def is_transient(exc: BaseException | None) -> bool:
    if exc is None or isinstance(exc, DbtFailure):
        return False
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:  # look through wrapped causes
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
