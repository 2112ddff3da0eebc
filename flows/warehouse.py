"""Holding the warehouse: one run writes it at a time, from its first write to its end, its own
retries included."""
from __future__ import annotations

import itertools
import time
from contextlib import contextmanager
from typing import Any, Iterator

from prefect import get_run_logger
from prefect.concurrency.sync import concurrency

from flows.retries import is_transient

# the Prefect global concurrency limit (1 slot) every run that writes the warehouse holds from its
# first write to its end, its own retries included
WAREHOUSE_LIMIT = "warehouse"
# a held slot is a lease the holder renews; a holder that died gives it up when the lease expires
WAREHOUSE_LEASE_S = 120.0


def ensure_warehouse_limit() -> None:
    """Create the warehouse limit with its one slot if the Prefect API has none yet."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(WAREHOUSE_LIMIT)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=WAREHOUSE_LIMIT, limit=1))
            except ObjectAlreadyExists:  # another run created it meanwhile
                pass


@contextmanager
def warehouse_lease(wait_s: float | None = None) -> Iterator[None]:
    """Hold the warehouse's one slot: another run waits here until this block ends. Unlike a
    deployment's or a work queue's limit, the slot stays held while the run waits for its retry,
    and it is not freed by the run's state (a zombie run marked Crashed keeps it until its process
    is gone and the lease expires). If the lease cannot be renewed, the holder stops."""
    ensure_warehouse_limit()
    with concurrency(WAREHOUSE_LIMIT, occupy=1, timeout_seconds=wait_s, strict=True,
                     lease_duration=WAREHOUSE_LEASE_S, raise_on_lease_renewal_failure=True):
        yield


def with_retries(attempt: Any, retries: int, delay_s: float, sleep: Any = time.sleep) -> Any:
    """Run attempt(), again after delay_s when it failed on a transient error (flows.retries), at most
    `retries` more times; any other failure (a failing data test, a FAILED Dataflow job) at once."""
    for number in itertools.count(1):
        try:
            return attempt()
        except Exception as error:
            if number > retries or not is_transient(error):
                raise
            get_run_logger().warning("attempt %d failed on a transient error, retrying in %s s: %s", number, delay_s, error)
            sleep(delay_s)
