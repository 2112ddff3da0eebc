"""What a run shows its readers, rendered: the run summary (markdown: the batch loads, the dbt nodes
and tests, the headline KPIs), and the KPI report, one self-contained HTML page of charts from the
gold marts (Plotly, its JavaScript inlined: nothing is fetched when the page is viewed). Pure: rows
in, text out; flows.publish reads gold and publishes the pages."""
from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from flows.dbt import NodeResult
    from ingestion.batch.launch import LoadResult

# the charts of the page, by element id: what a reader finds there
CHARTS = {
    "dau-mau": "DAU and MAU per game",
    "revenue": "Revenue and ad revenue per day (USD)",
    "arpdau": "ARPDAU per game (USD)",
    "retention": "Retention by cohort: D1 / D7 / D30",
    "funnel": "Level funnel: players who started each level",
}
RETENTION_DAYS = ("d1", "d7", "d30")


@dataclass(frozen=True)
class KpiData:
    """The gold marts' rows, as dbt show returns them."""

    daily: list[dict[str, Any]]
    retention: list[dict[str, Any]]
    funnel: list[dict[str, Any]]

    @property
    def games(self) -> list[str]:
        return sorted({str(r["game_id"]) for r in self.daily})




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


def summary_markdown(loads: list[LoadResult], built: list[NodeResult], tested: list[NodeResult], kpis: list[dict]) -> str:
    models = [n for n in built if n.resource_type in ("model", "seed", "snapshot")]
    tests = [n for n in built + tested if n.resource_type in ("test", "unit_test", "source")]
    lines = ["# Pipeline run", "", "## Batch ingestion", "", "| source | rows loaded | rows rejected | runner | job |", "|---|---|---|---|---|"]
    lines += [f"| {r.source} | {r.rows_loaded} | {r.rows_rejected} | {r.runner} | {job_link(r)} |" for r in loads]
    lines += ["", f"## dbt: {len(models)} models, {len(tests)} tests and checks", "", "| node | status | rows |", "|---|---|---|"]
    lines += [f"| {n.unique_id} | {n.status} | {'' if n.rows_affected is None else n.rows_affected} |" for n in models]
    by_status: dict[str, list[str]] = {}
    for n in tests:
        by_status.setdefault(n.status, []).append(n.unique_id)
    lines += [""] + [f"- {status}: {len(names)}" for status, names in sorted(by_status.items())]
    for status in ("warn", "fail", "error", "runtime error"):
        lines += [f"  - {status}: `{name}`" for name in by_status.get(status, [])]
    if kpis:
        latest = kpis[0]["activity_date"]
        lines += ["", f"## Headline KPIs, {latest}", "", "| game | " + " | ".join(k for k in kpis[0] if k not in ("activity_date", "game_id")) + " |"]
        lines += ["|---" * (len(kpis[0]) - 1) + "|"]
        lines += ["| " + " | ".join(str(v) for k, v in row.items() if k != "activity_date") + " |"
                  for row in kpis if row["activity_date"] == latest]
    return "\n".join(lines)


def job_link(load: LoadResult) -> str:
    return f"[{load.job_id}]({load.job_url})" if getattr(load, "job_url", None) else (load.job_id or "")
