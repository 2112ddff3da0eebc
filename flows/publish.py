"""Publishing what a run shows its readers: the run summary and the KPI report (with the dbt docs on
the daily runs) as Prefect artifacts and published pages, and the marts' freshness as an event.
Gold is read through dbt's analyses (`dbt/analyses/report_*.sql`), so it works on either warehouse;
the pages are rendered by flows.report."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import get_run_logger
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from flows import gcp
from flows.assets import report_mart_freshness
from flows.dbt import DbtFailure, NodeResult, dbt_args, invoke, show
from flows.report import KpiData, headline_markdown, render_html, summary_markdown

if TYPE_CHECKING:
    from ingestion.batch.launch import LoadResult

REPORT_ROWS_LIMIT = 100_000
# the rows of the latest days' KPIs the summary shows
SUMMARY_ROWS_LIMIT = 200


def publish_run_summary(loads: list[LoadResult], built: list[NodeResult], tested: list[NodeResult], settings: Any,
                        run_dir: Path | None, run_id: str, docs: bool) -> list[dict]:
    """The run's summary (markdown artifact), the latest day's KPIs (table artifact) and the run's
    published pages; returns the latest days' KPI rows."""
    kpis = show("latest_daily_kpis", settings, target=settings.target, limit=SUMMARY_ROWS_LIMIT)
    published = publish_run_report(settings, settings.target, run_dir, run_id, docs)
    latest = [row for row in kpis if kpis and row["activity_date"] == kpis[0]["activity_date"]]
    create_table_artifact(key="daily-kpis", table=[{k: "" if v is None else str(v) for k, v in r.items()} for r in latest],
                          description="KPIs of the latest day, per game")
    create_markdown_artifact(key="pipeline-run-summary", markdown=summary_markdown(loads, built, tested, kpis) + "\n\n" + published)
    return kpis


def read_gold(settings: Any, target: str) -> KpiData:
    """Every row of the three marts, through the current dbt session."""
    def rows(name: str) -> list[dict[str, Any]]:
        return show(f"report_{name}", settings, target=target, limit=REPORT_ROWS_LIMIT)

    return KpiData(daily=rows("daily_kpis"), retention=rows("retention"), funnel=rows("level_funnel"))


def publish(name: str, content: bytes, content_type: str, run_id: str, settings: Any) -> str:
    """Write one published file of a run and return its link: to the GCS bucket of
    settings.reports_url (gs://bucket/prefix/<run id>/<name>) in production, else to
    data_dir/reports/<run id>/<name>, with a copy in data_dir/reports/latest/."""
    if settings.reports_url:
        if not settings.reports_url.startswith("gs://"):
            raise ValueError(f"reports_url must be gs://bucket[/prefix], got {settings.reports_url!r}")
        bucket, _, prefix = settings.reports_url.removeprefix("gs://").partition("/")
        blob = "/".join(part for part in (prefix.strip("/"), run_id, name) if part)
        gcp.storage_client(settings).bucket(bucket).blob(blob).upload_from_string(content, content_type=content_type)
        return f"https://storage.cloud.google.com/{bucket}/{blob}"
    reports = settings.data_dir / "reports"
    for folder in (run_id, "latest"):
        (reports / folder).mkdir(parents=True, exist_ok=True)
        (reports / folder / name).write_bytes(content)
    return (reports / run_id / name).resolve().as_uri()


def generate_docs(settings: Any, target: str, target_path: Any) -> bytes:
    """`dbt docs generate --static` in the current dbt session: one HTML file with the manifest and
    the warehouse's catalog inlined."""
    logger = get_run_logger()
    args = [*dbt_args("docs generate", target=target, target_path=target_path), "--static"]
    code = invoke(args, settings, on_log=lambda line: logger.log(
        {"warn": 30, "error": 40}.get(line.level, 10), line.message))
    page = target_path / "static_index.html"
    if code != 0 or not page.exists():
        raise DbtFailure("docs generate", [], f"exit code {code}, see the log above")
    return page.read_bytes()


def publish_run_report(settings: Any, target: str, run_dir: Any, run_id: str, docs: bool) -> str:
    """The run's KPI report (and, with docs, the dbt docs) published and linked from the run as link
    artifacts; the marts' freshness reported as an event. Returns the summary's markdown for them."""
    data = read_gold(settings, target)
    url = publish("kpi-report.html", render_html(data).encode(), "text/html; charset=utf-8", run_id, settings)
    create_link_artifact(key="kpi-report", link=url, link_text="KPI report",
                         description="DAU/MAU, revenue, ARPDAU, retention cohorts and the level funnel, from gold")
    markdown = headline_markdown(data, url)
    if docs:
        docs_url = publish("dbt-docs.html", generate_docs(settings, target, run_dir / "docs"),
                           "text/html; charset=utf-8", run_id, settings)
        create_link_artifact(key="dbt-docs", link=docs_url, link_text="dbt docs",
                             description="The dbt project's models, columns, tests and lineage, with the warehouse catalog")
        markdown += f"\n\n[dbt docs]({docs_url})"
    newest = show("report_freshness", settings, target=target, limit=1)
    arrival = newest[0]["newest_arrival"] if newest else None
    if isinstance(arrival, str):
        arrival = datetime.fromisoformat(arrival.replace("Z", "+00:00"))
    report_mart_freshness(arrival, target, settings.mart_max_age_hours)
    return markdown
