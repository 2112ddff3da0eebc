"""What every sink is: something that stores bronze rows, and the two ways it can fail."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..rows import BronzeEvent, BronzeRejection


class TransientSinkError(RuntimeError):
    """The store is unavailable for now (5xx, rate limit, transport); delivery should be retried."""


class SinkRowError(RuntimeError):
    """The store refused specific rows; the message names them."""


class Sink(Protocol):
    """Stores bronze rows. Raises ``TransientSinkError`` when a retry may succeed.
    ``event_indexes`` (each event's place in its message) name an event the store refuses."""

    def write(
        self,
        events: Sequence[BronzeEvent],
        rejections: Sequence[BronzeRejection],
        event_indexes: Sequence[int] | None = None,
    ) -> None:
        ...

