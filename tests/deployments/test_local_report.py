"""The local report compares a gold mart with its ground-truth file on the columns both state: the
mart's own and the truth file's header. A column on one side only is reported, by name."""
from __future__ import annotations

from pathlib import Path

import duckdb

from deployments.local.report import mart_mismatches
from common.settings import PlatformSettings

TRUTH_HEADER = "game_id,level,players_started,players_completed,attempts,fails,completion_rate"


def build(tmp_path: Path, mart_sql: str, truth: str) -> PlatformSettings:
    settings = PlatformSettings(data_dir=tmp_path)
    settings.truth_dir.mkdir(parents=True)
    (settings.truth_dir / "level_funnel.csv").write_text(truth)
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute("create schema gold")
        con.execute(f"create table gold.mart_level_funnel as {mart_sql}")
    return settings


def test_an_equal_mart_compares_every_truth_column(tmp_path: Path) -> None:
    settings = build(
        tmp_path,
        "select 'g1' as game_id, 1 as level, 10 as players_started, 8 as players_completed, 12 as attempts,"
        " 4 as fails, 0.8000::decimal(9, 4) as completion_rate",
        f"{TRUTH_HEADER}\ng1,1,10,8,12,4,0.8000\n",
    )
    assert mart_mismatches(settings, "mart_level_funnel") == (1, 5, [])


def test_a_column_on_one_side_only_is_named_and_the_others_still_compared(tmp_path: Path) -> None:
    settings = build(
        tmp_path,
        "select 'g1' as game_id, 1 as level, 10 as players_started, 8 as players_completed, 12 as attempts,"
        " 0.8000::decimal(9, 4) as completion_rate, 3 as quits",
        f"{TRUTH_HEADER}\ng1,1,10,7,12,4,0.8000\n",
    )
    rows, cells, diffs = mart_mismatches(settings, "mart_level_funnel")
    assert (rows, cells) == (1, 4)
    assert diffs == [
        "column fails: in the truth, missing from the mart",
        "column quits: in the mart, not in the truth",
        "('g1', '1') players_completed: mart '8' != truth '7'",
    ]


def test_a_key_column_missing_from_the_mart_is_reported_without_pairing_rows(tmp_path: Path) -> None:
    settings = build(
        tmp_path,
        "select 'g1' as game_id, 10 as players_started, 8 as players_completed, 12 as attempts, 4 as fails,"
        " 0.8000::decimal(9, 4) as completion_rate",
        f"{TRUTH_HEADER}\ng1,1,10,8,12,4,0.8000\n",
    )
    assert mart_mismatches(settings, "mart_level_funnel") == (1, 0, ["column level: in the truth, missing from the mart"])
