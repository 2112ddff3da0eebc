"""The run's KPI report: one self-contained HTML page of charts from the gold marts (Plotly, its
JavaScript inlined: nothing is fetched when the page is viewed), and the headline numbers for the
run's markdown summary. Rendering is pure (rows in, HTML out); reading gold goes through dbt's
analyses (`dbt/analyses/report_*.sql`), so it works on either warehouse."""
from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Sequence

# the charts of the page, by element id: what a reader finds there
CHARTS = {
    "dau-mau": "DAU and MAU per game",
    "revenue": "Revenue and ad revenue per day (USD)",
    "arpdau": "ARPDAU per game (USD)",
    "retention": "Retention by cohort: D1 / D7 / D30",
    "funnel": "Level funnel: players who started each level",
}
RETENTION_DAYS = ("d1", "d7", "d30")
REPORT_ROWS_LIMIT = 100_000


@dataclass(frozen=True)
class KpiData:
    """The gold marts' rows, as dbt show returns them."""

    daily: list[dict[str, Any]]
    retention: list[dict[str, Any]]
    funnel: list[dict[str, Any]]

    @property
    def games(self) -> list[str]:
        return sorted({str(r["game_id"]) for r in self.daily})


def read_gold(settings: Any, target: str) -> KpiData:
    """Every row of the three marts, through the current dbt session."""
    from flows.dbt import show

    def rows(name: str) -> list[dict[str, Any]]:
        return show(f"report_{name}", settings, target=target, limit=REPORT_ROWS_LIMIT)

    return KpiData(daily=rows("daily_kpis"), retention=rows("retention"), funnel=rows("level_funnel"))


def number(value: Any) -> float | None:
    return None if value is None or value == "" else float(Decimal(str(value)))


def by_game(rows: Sequence[dict[str, Any]], game: str) -> list[dict[str, Any]]:
    return [r for r in rows if str(r["game_id"]) == game]


def headline(data: KpiData) -> list[dict[str, Any]]:
    """Per game: the latest day's DAU, MAU, revenue, ad revenue and ARPDAU, and the latest cohort's
    D1 retention that can already be observed."""
    out = []
    for game in data.games:
        days = by_game(data.daily, game)
        latest = max(days, key=lambda r: str(r["activity_date"]))
        cohorts = [r for r in by_game(data.retention, game) if r.get("retention_d1") is not None]
        d1 = max(cohorts, key=lambda r: str(r["cohort_date"]))["retention_d1"] if cohorts else None
        out.append({"game_id": game, "date": str(latest["activity_date"]), "dau": latest["dau"], "mau": latest["mau"],
                    "revenue_usd": latest["revenue_usd"], "ad_revenue_usd": latest["ad_revenue_usd"],
                    "arpdau": latest["arpdau"], "retention_d1": d1})
    return out


# how the headline shows each number: money in cents, ratios as in the marts
DISPLAY = {"revenue_usd": "{:.2f}", "ad_revenue_usd": "{:.2f}", "arpdau": "{:.4f}", "retention_d1": "{:.4f}"}


def shown(column: str, value: Any) -> str:
    """A headline cell as text (dbt show hands decimals over as JSON numbers: 0.00 arrives as 0.0)."""
    if value is None or value == "":
        return ""
    return DISPLAY[column].format(Decimal(str(value))) if column in DISPLAY else str(value)


def headline_markdown(data: KpiData, report_url: str | None = None) -> str:
    rows = headline(data)
    lines = ["## KPI report", ""]
    if report_url:
        lines += [f"[KPI report]({report_url})", ""]
    if not rows:
        return "\n".join(lines + ["No activity in gold yet."])
    cols = list(rows[0])
    lines += ["| " + " | ".join(cols) + " |", "|---" * len(cols) + "|"]
    lines += ["| " + " | ".join(shown(c, r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def figures(data: KpiData) -> dict[str, Any]:
    """One Plotly figure per chart of CHARTS."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    games = data.games
    dau_mau, revenue, arpdau, funnel = go.Figure(), go.Figure(), go.Figure(), go.Figure()
    for game in games:
        days = sorted(by_game(data.daily, game), key=lambda r: str(r["activity_date"]))
        x = [str(r["activity_date"]) for r in days]
        dau_mau.add_scatter(x=x, y=[number(r["dau"]) for r in days], name=f"{game} DAU", mode="lines+markers")
        dau_mau.add_scatter(x=x, y=[number(r["mau"]) for r in days], name=f"{game} MAU", mode="lines",
                            line={"dash": "dash"})
        revenue.add_bar(x=x, y=[number(r["revenue_usd"]) for r in days], name=f"{game} revenue")
        revenue.add_bar(x=x, y=[number(r["ad_revenue_usd"]) for r in days], name=f"{game} ad revenue")
        arpdau.add_scatter(x=x, y=[number(r["arpdau"]) for r in days], name=game, mode="lines+markers")
        levels = sorted(by_game(data.funnel, game), key=lambda r: int(r["level"]))
        funnel.add_funnel(y=[f"level {r['level']}" for r in levels], x=[number(r["players_started"]) for r in levels],
                          name=game, textinfo="value+percent initial")
    revenue.update_layout(barmode="stack")
    retention = make_subplots(rows=1, cols=max(len(games), 1), subplot_titles=games, shared_yaxes=True)
    for i, game in enumerate(games, start=1):
        cohorts = sorted(by_game(data.retention, game), key=lambda r: str(r["cohort_date"]))
        retention.add_heatmap(
            x=[d.upper() for d in RETENTION_DAYS], y=[str(r["cohort_date"]) for r in cohorts],
            z=[[number(r[f"retention_{d}"]) for d in RETENTION_DAYS] for r in cohorts],
            name=game, coloraxis="coloraxis", texttemplate="%{z:.0%}", row=1, col=i)
    cohorts_shown = max((len(by_game(data.retention, g)) for g in games), default=0)
    retention.update_layout(coloraxis={"colorscale": "Blues", "cmin": 0, "cmax": 1})
    # one row per cohort, newest at the bottom (a date axis would draw gaps between the days)
    retention.update_yaxes(type="category", autorange="reversed")
    figs_height = {"retention": max(420, 18 * cohorts_shown + 120)}
    figs = {"dau-mau": dau_mau, "revenue": revenue, "arpdau": arpdau, "retention": retention, "funnel": funnel}
    for key, fig in figs.items():
        fig.update_layout(title=CHARTS[key], template="plotly_white", height=figs_height.get(key, 420), margin={"t": 60})
    return figs


def render_html(data: KpiData, title: str = "Game analytics: KPI report") -> str:
    """The whole page: headline table, then every chart; plotly.js is inlined once."""
    from plotly.offline import get_plotlyjs

    heads = headline(data)
    cols = list(heads[0]) if heads else []
    table = ("<table id='headline'><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>"
             + "".join("<tr>" + "".join(f"<td>{html.escape(shown(c, r[c]))}</td>" for c in cols)
                       + "</tr>" for r in heads) + "</table>")
    charts = "".join(
        f"<section>{fig.to_html(full_html=False, include_plotlyjs=False, div_id=key, config={'responsive': True})}</section>"
        for key, fig in figures(data).items())
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}</style>"
            f"<script>{get_plotlyjs()}</script></head><body><h1>{html.escape(title)}</h1>"
            f"<h2>Latest day</h2>{table}{charts}</body></html>")


def publish(name: str, content: bytes, content_type: str, run_id: str, settings: Any) -> str:
    """Write one published file of a run and return its link: to the GCS bucket of
    settings.reports_url (gs://bucket/prefix/<run id>/<name>) in production, else to
    data_dir/reports/<run id>/<name>, with a copy in data_dir/reports/latest/."""
    if settings.reports_url:
        if not settings.reports_url.startswith("gs://"):
            raise ValueError(f"reports_url must be gs://bucket[/prefix], got {settings.reports_url!r}")
        from flows import gcp

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
    from prefect import get_run_logger

    from flows.dbt import DbtFailure, dbt_args, invoke

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
    from prefect.artifacts import create_link_artifact

    from flows.assets import report_mart_freshness
    from flows.dbt import show

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
