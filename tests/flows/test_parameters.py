"""A run's parameters are typed and allow-listed before anything runs: no var, selector or option
can carry SQL or extra dbt options into the build (the flow call, and the deployment's schema that
the API enforces when a run is created)."""
from __future__ import annotations

import json
from datetime import date

import pytest
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools.validation import validate
from pydantic import ValidationError

from flows.backfill import game_analytics_backfill
from flows.dbt import dbt_args
from flows.parameters import SOURCES, DbtVars, PipelineParameters
from flows.pipeline import game_analytics_pipeline

SQL_IN_A_VAR = {"arrival_lookback_hours": "3 hour) or true or (select 1)"}
OPTIONS_IN_SELECT = ["m", "--vars", '{"start_date": "x"}', "--full-refresh"]


def test_a_var_carrying_sql_is_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="arrival_lookback_hours") as error:
        PipelineParameters(vars=SQL_IN_A_VAR)
    assert "valid integer" in str(error.value)
    with pytest.raises(ValidationError, match="arrival_lookback_hours"):
        PipelineParameters(vars={"arrival_lookback_hours": "3"})  # a number as text is not a number here
    with pytest.raises(ValidationError, match="arrival_lookback_hours"):
        PipelineParameters(vars={"arrival_lookback_hours": True})


def test_options_hidden_in_a_selection_are_refused_before_dbt_is_called() -> None:
    with pytest.raises(ValidationError, match=r"select\.1\n.*'--vars' is not a dbt selector"):
        PipelineParameters(select=OPTIONS_IN_SELECT)
    with pytest.raises(ValidationError, match="exclude"):
        PipelineParameters(exclude=["m --full-refresh"])
    with pytest.raises(ValueError, match="'--full-refresh' is not a dbt selector"):
        dbt_args("build", target="local", select=["m", "--full-refresh"])


@pytest.mark.parametrize("selector", ["gold", "tag:quality_gate", "+fct_purchases+", "2+mart_retention", "@dim_player",
                                      "config.materialized:incremental", "path:models/gold", "source:telemetry.game_events",
                                      "tag:a,tag:b", "stg_*", "state:modified+"])
def test_dbt_selector_syntax_is_accepted(selector: str) -> None:
    assert PipelineParameters(select=[selector], exclude=[selector]).select == [selector]


@pytest.mark.parametrize("selector", ["-s", "--vars", "a b", "a\nb", "", "a;b", "{\"a\": 1}", "a" * 201, "model'"])
def test_anything_else_is_not_a_selector(selector: str) -> None:
    with pytest.raises(ValidationError, match="not a dbt selector"):
        PipelineParameters(select=[selector])


def test_only_the_projects_vars_with_their_types_and_ranges() -> None:
    with pytest.raises(ValidationError, match="bronze_tables"):
        DbtVars(bronze_tables=["game_events; drop table x"])
    with pytest.raises(ValidationError, match="lookback_days"):
        DbtVars(lookback_days=3)
    with pytest.raises(ValidationError, match="start_date.*set from start/end"):
        DbtVars(start_date="2026-01-01")
    with pytest.raises(ValidationError, match="reconcile_hours"):
        DbtVars(reconcile_hours=0)
    with pytest.raises(ValidationError, match="dev_days"):
        DbtVars(dev_days=-1)
    with pytest.raises(ValidationError, match="calendar_start"):
        DbtVars(calendar_start="2015-01-01' or true")
    with pytest.raises(ValidationError, match="calendar_start .* is after calendar_end"):
        DbtVars(calendar_start=date(2030, 1, 1), calendar_end=date(2020, 1, 1))
    ok = DbtVars(reconcile_hours=3, calendar_start="2015-01-01", arrival_lookback_hours=0)
    assert ok.for_dbt() == {"reconcile_hours": 3, "calendar_start": "2015-01-01", "arrival_lookback_hours": 0}
    args = dbt_args("build", target="local", dbt_vars=ok.for_dbt(), start=date(2026, 1, 1), end=date(2026, 1, 2))
    assert json.loads(args[args.index("--vars") + 1]) == {"reconcile_hours": 3, "calendar_start": "2015-01-01",
                                                          "arrival_lookback_hours": 0, "start_date": "2026-01-01",
                                                          "end_date": "2026-01-02"}


def test_the_flow_refuses_them_when_called() -> None:
    """What Prefect checks before the flow's first line runs (a run's parameters, a subflow call)."""
    for bad in ({"vars": SQL_IN_A_VAR}, {"select": OPTIONS_IN_SELECT}, {"vars": {"unknown": 1}}):
        with pytest.raises(Exception, match="vars|select|unknown") as error:
            game_analytics_pipeline.validate_parameters(bad)
        assert type(error.value).__name__ == "ParameterTypeError"
    with pytest.raises(Exception, match="select"):
        game_analytics_backfill.validate_parameters({"start": "2026-01-01", "end": "2026-01-02", "select": ["--full-refresh"]})
    ok = game_analytics_pipeline.validate_parameters({"vars": {"reconcile_hours": 3}, "select": ["gold"]})
    assert ok["vars"] == DbtVars(reconcile_hours=3)


@pytest.mark.parametrize("flow", [game_analytics_pipeline, game_analytics_backfill])
def test_the_deployment_schema_refuses_them_when_a_run_is_created(flow) -> None:
    """The schema the API enforces on deployments with enforce_parameter_schema (prefect.yaml)."""
    schema = parameter_schema(flow).model_dump_for_openapi()
    base = {"start": "2026-01-01", "end": "2026-01-02"} if flow is game_analytics_backfill else {}
    for bad, named in (({"vars": SQL_IN_A_VAR}, "vars.arrival_lookback_hours"), ({"select": OPTIONS_IN_SELECT}, r"select\[[13]\]"),
                       ({"vars": {"unknown": 1}}, "'unknown' was unexpected"), ({"vars": {"reconcile_hours": 0}}, "vars.reconcile_hours")):
        with pytest.raises(Exception, match=named):
            validate({**base, **bad}, schema, raise_on_error=True, ignore_required=True)
    validate({**base, "vars": {"reconcile_hours": 3}, "select": ["tag:quality_gate"]}, schema, raise_on_error=True,
             ignore_required=True)


def test_the_flows_parameters_are_the_models_fields_flat_in_its_schema() -> None:
    """Declared once (PipelineParameters); the deployment's schema lists them flat, in the model's
    order, under the names runs are started with (`-p full_refresh=true`, prefect.yaml)."""
    schema = parameter_schema(game_analytics_pipeline).model_dump_for_openapi()
    names = sorted(schema["properties"], key=lambda name: schema["properties"][name]["position"])
    assert names == list(PipelineParameters.model_fields) == [
        "target", "sources", "select", "exclude", "full_refresh", "start", "end", "vars", "freshness", "notify_block",
        "dbt_timeout_s", "dataflow_timeout_s", "max_rejected_share", "batch_days", "changed_only", "docs"]
    assert schema["properties"]["sources"]["default"] == list(SOURCES)
    assert schema["properties"]["full_refresh"] == {"default": False, "position": 4, "title": "full_refresh",
                                                     "type": "boolean"}
    validated = game_analytics_pipeline.validate_parameters({"full_refresh": True, "batch_days": 7})
    assert PipelineParameters(**validated) == PipelineParameters(full_refresh=True, batch_days=7)


def test_the_backfill_passes_on_the_pipelines_parameters_as_the_pipeline_declares_them() -> None:
    from flows.backfill import PASSED_ON

    pipeline = parameter_schema(game_analytics_pipeline).model_dump_for_openapi()
    backfill = parameter_schema(game_analytics_backfill).model_dump_for_openapi()
    for name in PASSED_ON:
        declared = {k: v for k, v in pipeline["properties"][name].items() if k != "position"}
        assert {k: v for k, v in backfill["properties"][name].items() if k != "position"} == declared, name
    assert backfill["required"] == ["start", "end"]
    assert list(backfill["properties"])[:3] == ["start", "end", "window_days"]
