"""The game simulator: deterministic players, sessions, levels, purchases and ads of one or more
games, delivered as Pub/Sub messages (with duplicates, late and broken input), together with the
studio's batch exports (players, store items, FX rates) and the ground truth of every KPI."""
from simulator.config import SimulationConfig
from simulator.messages import InvalidEvent, PublishedMessage
from simulator.simulation import Simulation, simulate
from simulator.truth import GroundTruth, compute_truth

__all__ = [
    "GroundTruth",
    "InvalidEvent",
    "PublishedMessage",
    "Simulation",
    "SimulationConfig",
    "compute_truth",
    "simulate",
]
