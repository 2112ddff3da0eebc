"""The Pub/Sub names of the streaming path, stated once: the topic the games publish to, the push
subscription that delivers it to the function locally (in production Eventarc names its own), and
the dead-letter topic with its pull subscription. The deployment, the local twin, the simulator's
delivery and the replay command take them from here."""
from __future__ import annotations

from typing import Final

TOPIC: Final = "game-events"
PUSH_SUBSCRIPTION: Final = "game-events-push"
DEAD_LETTER_TOPIC: Final = "game-events-dead-letter"
DEAD_LETTER_SUBSCRIPTION: Final = "game-events-dead-letter-pull"
