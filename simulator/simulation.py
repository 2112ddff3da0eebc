"""The whole simulation: reference data, players, their play, the Pub/Sub messages carrying it
(with duplicates, late and broken input), and the ground truth."""
from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from simulator.catalog import ITEM_TEMPLATES, SOFT_CURRENCIES, fx_rates, price_points, store_items
from simulator.config import SimulationConfig
from simulator.contract import LEVEL_EVENTS, PURCHASE
from simulator.deliver import write_messages
from simulator.faults import (
    EVENT_FAULTS,
    FRAGMENT_FAULTS,
    MALFORMED_JSON,
    NOT_UTF8,
    broken_envelope,
    fragment_item,
    invalid_item,
    source_fault,
)
from simulator.gameplay import Shop, TimedEvent, order_numbers, play
from simulator.messages import Envelope, InvalidEvent, PublishedMessage, finalize, package_session
from simulator.population import Player, make_players, player_row, studio_accounts
from simulator.rounding import end_days_on_half_cents
from simulator.timefmt import MS_PER_DAY, MS_PER_S, date_to_ms, format_utc_seconds
from simulator.truth import FxTable, GroundTruth, cell, compute_truth, write_csv

PLAYER_COLUMNS: tuple[str, ...] = ("player_id", "game_id", "created_at", "country", "acquisition_channel", "is_test_account", "updated_at")
STORE_ITEM_COLUMNS: tuple[str, ...] = ("sku", "game_id", "item_name", "item_type", "list_price_usd", "updated_at")
FX_COLUMNS: tuple[str, ...] = ("date", "currency", "usd_per_unit")
IN_BATCH_SHARE = 0.6  # of invalid events: slipped into an existing batch rather than sent alone
BROKEN_MESSAGES_PER_RATE = 0.1  # whole unparseable messages (of each kind) per message, per unit of malformed_rate


def rng_for(seed: int, *parts: str) -> random.Random:
    """An independent, deterministic random stream for one part of the simulation."""
    return random.Random("/".join((str(seed), *parts)))


@dataclass
class Sources:
    """Events of one game's (non-test) players that broken copies are made from."""

    events: list[tuple[Player, dict]] = field(default_factory=list)
    levels: list[tuple[Player, dict]] = field(default_factory=list)
    purchases: list[tuple[Player, dict]] = field(default_factory=list)

    def add(self, player: Player, session: list[TimedEvent]) -> None:
        for _, event in session:
            self.events.append((player, event))
            if event["event_name"] in LEVEL_EVENTS:
                self.levels.append((player, event))
            elif event["event_name"] == PURCHASE:
                self.purchases.append((player, event))

    def pick(self, rng: random.Random, fault: str = "") -> tuple[Player, dict]:
        """An event to copy: a purchase to break its price, preferably a level event to break its
        level, otherwise any event."""
        if fault == "non_positive_price":
            return rng.choice(self.purchases)
        if fault == "wrong_type" and self.levels:
            return rng.choice(self.levels)
        return rng.choice(self.events)


@dataclass
class Simulation:
    config: SimulationConfig
    messages: list[PublishedMessage]  # ordered by publish_time
    players: list[dict]
    store_items: list[dict]
    fx_rates: list[dict]
    valid_events: list[dict]  # parsed with Decimal for non-integer numbers; duplicates included
    invalid_events: list[InvalidEvent]
    truth: GroundTruth

    def write_exports(self, exports_dir: Path) -> None:
        """players.csv, store_items.csv and fx_rates/fx_rates_YYYY-MM-DD.csv (one per exported day,
        replacing any earlier fx_rates_*.csv there)."""
        exports_dir.mkdir(parents=True, exist_ok=True)
        write_rows(exports_dir / "players.csv", PLAYER_COLUMNS, self.players)
        write_rows(exports_dir / "store_items.csv", STORE_ITEM_COLUMNS, self.store_items)
        fx_dir = exports_dir / "fx_rates"
        fx_dir.mkdir(exist_ok=True)
        for stale in fx_dir.glob("fx_rates_*.csv"):
            stale.unlink()
        for day in sorted({row["date"] for row in self.fx_rates}):
            rows = [row for row in self.fx_rates if row["date"] == day]
            write_rows(fx_dir / f"fx_rates_{day.isoformat()}.csv", FX_COLUMNS, rows)

    def write_truth(self, truth_dir: Path) -> None:
        self.truth.write(truth_dir)

    def write_messages(self, path: Path) -> None:
        write_messages(self.messages, path)


def export_cell(value: object) -> str:
    """Extract style: UTC timestamps with Z, booleans true/false."""
    if isinstance(value, datetime):
        return format_utc_seconds(value)
    return cell(value)


def write_rows(path: Path, columns: tuple[str, ...], rows: list[dict]) -> None:
    write_csv(path, columns, rows, export_cell)


def make_shop(items: list[dict], fx_rows: list[dict], order_ids: Iterator[str] | None = None) -> Shop:
    skus = tuple((item["sku"], template.weight, template.stackable) for item, template in zip(items, ITEM_TEMPLATES))
    return Shop(skus=skus, prices=price_points(items, fx_rows), order_ids=order_ids)


def leave_out_of_export(rng: random.Random, players: list[Player], share: float) -> list[Player]:
    """The players the players export holds: all but ``share`` of them (at least one when the
    share is positive), who play without the export knowing them yet."""
    if share <= 0:
        return list(players)
    missing = set(rng.sample(range(len(players)), max(1, round(share * len(players)))))
    return [player for index, player in enumerate(players) if index not in missing]


def has_room(envelope: Envelope, max_events: int) -> bool:
    return envelope.batch and len(envelope.items) < max_events


def inject_event_faults(
    rng: random.Random, count: int, targets: list[Envelope], sources: dict[str, Sources], max_events: int
) -> list[Envelope]:
    """``count`` invalid events, cycling through every fault kind; returns the new messages
    (the rest went into existing batches)."""
    extra: list[Envelope] = []
    for index in range(count):
        target = rng.choice(targets)
        game_sources = sources[target.attributes["game_id"]]
        fault = source_fault(EVENT_FAULTS[index % len(EVENT_FAULTS)], bool(game_sources.purchases))
        player, source = game_sources.pick(rng, fault)
        if has_room(target, max_events) and rng.random() < IN_BATCH_SHARE:
            item = invalid_item(rng, fault, source, player, target.publish_ms)
            target.items.insert(rng.randrange(len(target.items) + 1), item)
        else:
            publish_ms = target.publish_ms + rng.randint(100, 30 * MS_PER_S)
            item = invalid_item(rng, fault, source, player, publish_ms)
            extra.append(Envelope(publish_ms, dict(target.attributes), [item], batch=False))
    return extra


def inject_fragments(
    rng: random.Random, count: int, targets: list[Envelope], sources: dict[str, Sources], max_events: int
) -> list[Envelope]:
    """``count`` batch elements that are JSON but not event objects."""
    extra: list[Envelope] = []
    batches = [envelope for envelope in targets if envelope.batch]
    for index in range(count):
        target = rng.choice(batches) if batches else None
        if target is None or not has_room(target, max_events):
            near = rng.choice(targets)
            target = Envelope(near.publish_ms + rng.randint(100, 30 * MS_PER_S), dict(near.attributes), [], batch=True)
            extra.append(target)
            batches.append(target)
        _, source = sources[target.attributes["game_id"]].pick(rng)
        item = fragment_item(rng, FRAGMENT_FAULTS[index % len(FRAGMENT_FAULTS)], source)
        target.items.insert(rng.randrange(len(target.items) + 1), item)
    return extra


def inject_broken_messages(rng: random.Random, count: int, targets: list[Envelope], sources: dict[str, Sources]) -> list[Envelope]:
    """``count`` messages of each kind whose data cannot be read at all."""
    extra: list[Envelope] = []
    for error_type in (MALFORMED_JSON, NOT_UTF8):
        for _ in range(count):
            near = rng.choice(targets)
            _, source = sources[near.attributes["game_id"]].pick(rng)
            extra.append(broken_envelope(rng, error_type, source, near))
    return extra


def simulate(config: SimulationConfig) -> Simulation:
    """Run the simulation described by ``config`` (deterministic)."""
    span_end_ms = date_to_ms(config.start_date) + config.days * MS_PER_DAY
    fx_rows = fx_rates(rng_for(config.seed, "fx"), config.start_date, config.days, config.fx_holidays)
    fx = FxTable(fx_rows)
    accounts = None
    if config.shared_ids:  # a pool a little larger than a game's players: most play every game
        accounts = studio_accounts(rng_for(config.seed, "accounts"), config.players_per_game * 3 // 2)
    players: list[Player] = []
    exported: list[Player] = []
    items: list[dict] = []
    envelopes: list[Envelope] = []
    sources: dict[str, Sources] = {}
    event_count = 0
    for index, game_id in enumerate(config.games):
        game_items = store_items(rng_for(config.seed, "store", game_id), game_id, SOFT_CURRENCIES[index % len(SOFT_CURRENCIES)],
                                 config.start_date, shared_skus=config.shared_ids)
        shop = make_shop(game_items, fx_rows, order_ids=order_numbers() if config.shared_ids else None)
        game_players = make_players(
            rng_for(config.seed, "players", game_id), game_id, config.players_per_game, config.start_date, config.days,
            config.test_account_share, accounts,
        )
        game_exported = leave_out_of_export(rng_for(config.seed, "unexported", game_id), game_players, config.unexported_player_share)
        play_rng = rng_for(config.seed, "play", game_id)
        send_rng = rng_for(config.seed, "send", game_id)
        played = [(player, session) for player in game_players
                  for session in play(play_rng, player, span_end_ms, shop, config.duplicate_transaction_rate)]
        if config.half_cent_days:
            # the export decides who is a test account: a player missing from it counts
            counted = {p.player_id for p in game_players} - {p.player_id for p in game_exported if p.is_test_account}
            end_days_on_half_cents(rng_for(config.seed, "half_cents", game_id), played, counted, shop, fx, config.half_cent_days)
        real, test = Sources(), Sources()
        for player, session in played:
            event_count += len(session)
            (test if player.is_test_account else real).add(player, session)
            envelopes += package_session(
                send_rng, player, session, config.max_events_per_message, config.duplicate_rate, config.late_rate
            )
        sources[game_id] = real if real.events else test
        items += game_items
        players += game_players
        exported += game_exported

    fault_rng = rng_for(config.seed, "faults")
    targets = [envelope for envelope in envelopes if not envelope.late] or list(envelopes)
    broken_count = max(2, round(len(envelopes) * config.malformed_rate * BROKEN_MESSAGES_PER_RATE)) if config.malformed_rate > 0 else 0
    envelopes += inject_event_faults(fault_rng, round(config.invalid_rate * event_count), targets, sources, config.max_events_per_message)
    envelopes += inject_fragments(fault_rng, round(config.malformed_rate * event_count), targets, sources, config.max_events_per_message)
    envelopes += inject_broken_messages(fault_rng, broken_count, targets, sources)

    first_number = rng_for(config.seed, "message_ids").randrange(10**15, 9 * 10**15)
    delivered = finalize(envelopes, first_number)
    player_rows = [player_row(player) for player in exported]
    return Simulation(
        config=config,
        messages=delivered.messages,
        players=player_rows,
        store_items=items,
        fx_rates=fx_rows,
        valid_events=delivered.valid_events,
        invalid_events=delivered.invalid_events,
        truth=compute_truth(delivered.valid_events, player_rows, fx_rows),
    )
