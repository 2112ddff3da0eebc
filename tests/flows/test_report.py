"""The run's KPI report and dbt docs: one pipeline run against a real Prefect server publishes both,
links them from the run, and the report, opened in a real headless Chromium (Debian's package,
driven by Playwright) with every network request but the page itself refused, draws every chart
with no console error and shows exactly gold's numbers."""
from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlparse

import pytest

from deployments.local.report import read_mart
from flows.pipeline import game_analytics_pipeline
from flows.report import CHARTS, KpiData, headline_markdown, render_html
from common.settings import OrchestrationSettings
from tests.conftest import land_simulation

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def chromium_required() -> None:
    if not shutil.which("chromium") and not Path(CHROMIUM).exists():
        pytest.fail("Chromium is required: apt-get install -y chromium (python3 run.py test installs it when run as root)", pytrace=False)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory, tiny_sim, prefect_api: str) -> dict:
    """One pipeline run with docs, on the tiny simulation; its artifacts and data folder."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    data_dir = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GA_DATA_DIR", str(data_dir))
        land_simulation(tiny_sim, data_dir)
        state = game_analytics_pipeline.with_options(retries=0)(freshness=False, docs=True, return_state=True)
        assert state.is_completed(), state.message
        with get_client(sync_client=True) as client:
            artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
        gold = {m: read_mart(OrchestrationSettings(data_dir=data_dir), m) for m in ("mart_daily_kpis", "mart_retention", "mart_level_funnel")}
    return {"data_dir": data_dir, "artifacts": {a.key: a for a in artifacts}, "gold": gold,
            "run_id": str(state.state_details.flow_run_id)}


def local_path(artifact_data: str) -> Path:
    """The file a link artifact ("[text](file:///...)") points to."""
    return Path(urlparse(artifact_data[artifact_data.rindex("(") + 1:-1]).path)


def open_offline(page_path: Path, shots: Path | None = None) -> tuple[dict, list[str], list[str]]:
    """Open a page in headless Chromium with every request but file:// refused; return what the
    page exposes (per chart: its traces' data and its drawn marks), console errors and refused URLs."""
    from playwright.sync_api import sync_playwright

    chromium_required()
    errors: list[str] = []
    refused: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))

            def route(r) -> None:
                if r.request.url.startswith("file://"):
                    r.continue_()
                else:
                    refused.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.goto(page_path.as_uri(), wait_until="load")
            page.wait_for_function("[...document.querySelectorAll('.js-plotly-plot')].every(d => d._fullLayout)")
            charts = page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('.js-plotly-plot')].map(d => [d.id, {
                data: d.data.map(t => ({name: t.name, type: t.type, x: t.x, y: t.y, z: t.z})),
                marks: d.querySelectorAll('.trace path, .trace .point, .hm image, .heatmaplayer image, .funnel .point').length,
                svg: d.querySelector('svg.main-svg') ? d.querySelector('svg.main-svg').getBoundingClientRect().height : 0,
            }]))""")
            if shots is not None:
                page.screenshot(path=str(shots), full_page=True)
        finally:
            browser.close()
    return charts, errors, refused


def num(value) -> float | None:
    return None if value is None else float(Decimal(str(value)))


def test_the_report_draws_every_chart_offline_with_golds_numbers(published: dict, tmp_path: Path) -> None:
    report = published["artifacts"]["kpi-report"]
    path = local_path(report.data)
    assert path.exists() and path.parent.name == published["run_id"]
    assert (published["data_dir"] / "reports" / "latest" / "kpi-report.html").read_bytes() == path.read_bytes()
    charts, errors, refused = open_offline(path, tmp_path / "report.png")
    assert not errors, errors
    assert not refused, f"the page fetched {refused}: it must be self-contained"
    assert set(charts) == set(CHARTS)
    for key, chart in charts.items():
        assert chart["svg"] > 0 and chart["marks"] > 0, (key, chart["marks"])

    gold = published["gold"]
    games = sorted({r["game_id"] for r in gold["mart_daily_kpis"]})
    traces = {(key, t["name"]): t for key, chart in charts.items() for t in chart["data"]}
    for game in games:
        days = sorted((r for r in gold["mart_daily_kpis"] if r["game_id"] == game), key=lambda r: r["activity_date"])
        dates = [r["activity_date"].isoformat() for r in days]
        for key, name, column in (("dau-mau", f"{game} DAU", "dau"), ("dau-mau", f"{game} MAU", "mau"),
                                  ("revenue", f"{game} revenue", "revenue_usd"),
                                  ("revenue", f"{game} ad revenue", "ad_revenue_usd"), ("arpdau", game, "arpdau")):
            assert traces[(key, name)]["x"] == dates, (key, name)
            assert traces[(key, name)]["y"] == [num(r[column]) for r in days], (key, name)
        cohorts = sorted((r for r in gold["mart_retention"] if r["game_id"] == game), key=lambda r: r["cohort_date"])
        heat = traces[("retention", game)]
        assert heat["y"] == [r["cohort_date"].isoformat() for r in cohorts]
        assert heat["z"] == [[num(r[f"retention_d{n}"]) for n in (1, 7, 30)] for r in cohorts]
        levels = sorted((r for r in gold["mart_level_funnel"] if r["game_id"] == game), key=lambda r: r["level"])
        assert traces[("funnel", game)]["x"] == [num(r["players_started"]) for r in levels]


def test_the_run_links_its_report_and_dbt_docs_and_summarises_the_headline(published: dict) -> None:
    artifacts = published["artifacts"]
    docs = local_path(artifacts["dbt-docs"].data)
    page = docs.read_text()
    # the static docs page inlines the manifest and the warehouse catalog
    assert "mart_daily_kpis" in page and '"CATALOG.JSON INLINE DATA"' not in page and "catalog" in page
    summary = artifacts["pipeline-run-summary"].data
    assert "[KPI report](file://" in summary and "[dbt docs](file://" in summary
    latest = max(r["activity_date"] for r in published["gold"]["mart_daily_kpis"])
    for row in (r for r in published["gold"]["mart_daily_kpis"] if r["activity_date"] == latest):
        assert (f"| {row['game_id']} | {latest.isoformat()} | {row['dau']} | {row['mau']} | {row['revenue_usd']} "
                f"| {row['ad_revenue_usd']} | {row['arpdau']} |") in summary


def test_without_docs_only_the_report_is_published(published: dict) -> None:
    """docs is off by default (the hourly runs): the pipeline's signature says so."""
    import inspect

    assert inspect.signature(game_analytics_pipeline.fn).parameters["docs"].default is False


def test_an_empty_gold_renders_a_page_that_says_so() -> None:
    data = KpiData(daily=[], retention=[], funnel=[])
    assert "No activity in gold yet." in headline_markdown(data)
    assert "<table id='headline'>" in render_html(data)
