"""The simulated stream: determinism, the contract, and the faults it is meant to carry."""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from jsonschema import Draft202012Validator

from simulator import Simulation, simulate
from simulator.faults import EVENT_FAULTS, FRAGMENT_FAULTS
from simulator.timefmt import parse_timestamp
from simulator import SimulationConfig

EARLIEST = datetime(2015, 1, 1, tzinfo=timezone.utc)


def message_events(data: bytes) -> list[object]:
    payload = json.loads(data, parse_float=Decimal)
    return payload["events"] if isinstance(payload, dict) and "events" in payload else [payload]


def delivered_events(sim: Simulation) -> list[tuple[str, datetime, dict]]:
    """(message_id, publish_time, event) for every valid event, read back from the message bytes."""
    broken = {inv.message_id for inv in sim.invalid_events if inv.error_type in ("malformed_json", "not_utf8")}
    injected: dict[str, list[object]] = defaultdict(list)
    for inv in sim.invalid_events:
        if inv.message_id not in broken:
            injected[inv.message_id].append(json.loads(inv.raw, parse_float=Decimal))
    out: list[tuple[str, datetime, dict]] = []
    for msg in sim.messages:
        if msg.message_id in broken:
            continue
        for element in message_events(msg.data):
            if isinstance(element, dict) and element not in injected[msg.message_id]:
                out.append((msg.message_id, msg.publish_time, element))
    return out


def write_all(sim: Simulation, folder: Path) -> dict[str, bytes]:
    sim.write_messages(folder / "messages.jsonl")
    sim.write_truth(folder / "truth")
    sim.write_exports(folder / "exports")
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_config_gives_byte_identical_outputs(small_config: SimulationConfig, small_sim: Simulation, tmp_path: Path) -> None:
    again = simulate(small_config)
    first = write_all(small_sim, tmp_path / "a")
    second = write_all(again, tmp_path / "b")
    assert first == second
    assert len(first) > 5


def test_another_seed_gives_other_outputs(small_config: SimulationConfig, small_sim: Simulation, tmp_path: Path) -> None:
    other = simulate(replace(small_config, seed=small_config.seed + 1))
    first = write_all(small_sim, tmp_path / "a")
    second = write_all(other, tmp_path / "b")
    assert first["messages.jsonl"] != second["messages.jsonl"]
    assert first["truth/daily_kpis.csv"] != second["truth/daily_kpis.csv"]
    assert not {e["event_id"] for e in small_sim.valid_events} & {e["event_id"] for e in other.valid_events}


def test_messages_are_ordered_unique_and_carry_their_events(small_config: SimulationConfig, small_sim: Simulation) -> None:
    times = [m.publish_time for m in small_sim.messages]
    assert times == sorted(times)
    assert all(t.tzinfo is not None and t.utcoffset() == timedelta(0) for t in times)
    assert len({m.message_id for m in small_sim.messages}) == len(small_sim.messages)
    assert all(m.attributes["game_id"] in small_config.games and m.attributes["sdk_version"] for m in small_sim.messages)
    broken = {inv.message_id for inv in small_sim.invalid_events if inv.error_type in ("malformed_json", "not_utf8")}
    readable = [m for m in small_sim.messages if m.message_id not in broken]
    bare = [m for m in readable if m.data.startswith(b'{"event_id"')]
    batches = [m for m in readable if m.data.startswith(b'{"events":[')]
    assert len(bare) > 50 and len(batches) > 50
    assert 1 < max(len(message_events(m.data)) for m in batches) <= small_config.max_events_per_message
    assert max(len(message_events(m.data)) for m in batches) > 5


def test_valid_events_are_what_the_messages_deliver(small_sim: Simulation) -> None:
    from_messages = [event for _, _, event in delivered_events(small_sim)]
    assert from_messages == small_sim.valid_events


def test_every_valid_event_passes_the_contract(small_sim: Simulation, validator: Draft202012Validator) -> None:
    failures = [(e["event_id"], [err.message for err in validator.iter_errors(e)]) for e in small_sim.valid_events if not validator.is_valid(e)]
    assert failures == []


def test_every_invalid_event_fails_as_labelled(small_sim: Simulation, validator: Draft202012Validator) -> None:
    publish = {m.message_id: m.publish_time for m in small_sim.messages}
    data = {m.message_id: m.data for m in small_sim.messages}
    seen = Counter()
    for inv in small_sim.invalid_events:
        seen[inv.error_type] += 1
        if inv.error_type == "not_utf8":
            assert inv.raw == data[inv.message_id]
            try:
                inv.raw.decode("utf-8")
            except UnicodeDecodeError:
                continue
            raise AssertionError(f"{inv.message_id} decodes as UTF-8")
        text = inv.raw.decode("utf-8")
        if inv.error_type == "malformed_json":
            assert inv.raw == data[inv.message_id]
            try:
                json.loads(text)
            except ValueError:
                continue
            raise AssertionError(f"{inv.message_id} parses as JSON")
        assert inv.raw in data[inv.message_id]
        event = json.loads(text, parse_float=Decimal)
        if inv.error_type == "schema_violation":
            assert not validator.is_valid(event), inv.reason
        else:
            assert inv.error_type == "timestamp_out_of_range"
            assert validator.is_valid(event), inv.reason
            moment = parse_timestamp(event["event_timestamp"])
            assert moment < EARLIEST or moment > publish[inv.message_id] + timedelta(hours=24), inv.reason
    assert set(seen) == {"schema_violation", "timestamp_out_of_range", "malformed_json", "not_utf8"}


def test_invalid_events_copy_real_players_with_fresh_ids(small_sim: Simulation) -> None:
    players = {(p["game_id"], p["player_id"]) for p in small_sim.players if not p["is_test_account"]}
    valid_ids = {e["event_id"] for e in small_sim.valid_events}
    copies = [
        json.loads(inv.raw, parse_float=Decimal)
        for inv in small_sim.invalid_events
        if inv.reason.split(":")[0] in EVENT_FAULTS
    ]
    assert len(copies) > 20
    for event in copies:
        assert event.get("event_id") not in valid_ids
        if "game_id" in event and "player_id" in event:
            assert (event["game_id"].lower(), event["player_id"]) in players


def test_every_fault_kind_is_injected(small_config: SimulationConfig, small_sim: Simulation) -> None:
    kinds = Counter(inv.reason.split(":")[0] for inv in small_sim.invalid_events)
    for fault in EVENT_FAULTS + FRAGMENT_FAULTS:
        assert kinds[fault] >= 1, fault
    unique_valid = len({e["event_id"] for e in small_sim.valid_events})
    event_faults = sum(kinds[f] for f in EVENT_FAULTS)
    assert 0.5 * small_config.invalid_rate < event_faults / unique_valid < 1.5 * small_config.invalid_rate
    fragments = sum(kinds[f] for f in FRAGMENT_FAULTS)
    assert 0.5 * small_config.malformed_rate < fragments / unique_valid < 1.5 * small_config.malformed_rate


def test_malformed_elements_sit_inside_batches(small_sim: Simulation) -> None:
    data = {m.message_id: m.data for m in small_sim.messages}
    fragments = [inv for inv in small_sim.invalid_events if inv.reason.split(":")[0] in FRAGMENT_FAULTS]
    for inv in fragments:
        elements = message_events(data[inv.message_id])
        assert data[inv.message_id].startswith(b'{"events":[')
        assert json.loads(inv.raw, parse_float=Decimal) in elements
        assert not isinstance(json.loads(inv.raw), dict) or json.loads(inv.raw) == {}


def test_duplicates_share_event_ids_mostly_across_messages(small_config: SimulationConfig, small_sim: Simulation) -> None:
    where: dict[str, list[str]] = defaultdict(list)
    for message_id, _, event in delivered_events(small_sim):
        where[event["event_id"]].append(message_id)
    repeated = {event_id: ids for event_id, ids in where.items() if len(ids) > 1}
    assert 0.5 * small_config.duplicate_rate < len(repeated) / len(where) < 1.5 * small_config.duplicate_rate
    across = sum(1 for ids in repeated.values() if len(set(ids)) > 1)
    assert across > 0.6 * len(repeated)
    assert across < len(repeated)  # a few are repeated inside the same batch


def test_repeated_transactions_get_new_event_ids(small_config: SimulationConfig, small_sim: Simulation) -> None:
    by_transaction: dict[str, set[str]] = defaultdict(set)
    for event in small_sim.valid_events:
        if event["event_name"] == "purchase":
            by_transaction[event["params"]["transaction_id"]].add(event["event_id"])
    repeated = [t for t, ids in by_transaction.items() if len(ids) > 1]
    assert 0.4 * small_config.duplicate_transaction_rate < len(repeated) / len(by_transaction) < 1.6 * small_config.duplicate_transaction_rate


def test_late_events_arrive_one_hour_to_five_days_after_they_happen(small_config: SimulationConfig, small_sim: Simulation) -> None:
    lateness = [publish - parse_timestamp(event["event_timestamp"]) for _, publish, event in delivered_events(small_sim)]
    assert min(lateness) >= timedelta(0)
    assert max(lateness) <= timedelta(days=5)
    late = [delay for delay in lateness if delay >= timedelta(hours=1)]
    assert 0.5 * small_config.late_rate < len(late) / len(lateness) < 1.5 * small_config.late_rate
    assert max(late) > timedelta(days=2)
    # the rest is near real time: a flush at most every 10 minutes, a repeat at most 10 minutes later
    assert max(d for d in lateness if d < timedelta(hours=1)) < timedelta(minutes=21)


def test_whole_message_failures_hold_no_valid_event(small_sim: Simulation) -> None:
    broken = {inv.message_id for inv in small_sim.invalid_events if inv.error_type in ("malformed_json", "not_utf8")}
    assert len(broken) >= 4
    assert not broken & {message_id for message_id, _, _ in delivered_events(small_sim)}
