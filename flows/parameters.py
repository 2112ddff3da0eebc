"""The pipeline's run parameters: typed, bounded and checked together before anything runs, so that
no var, selector or option can carry SQL or extra dbt options into the build; an error names the
parameter."""
from __future__ import annotations

import inspect
from datetime import date, timedelta
from typing import Annotated, Any, Callable, Literal, TypeVar, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, WithJsonSchema, field_validator, model_validator

from flows.batch import DEFAULT_MAX_REJECTED_SHARE
from flows.dbt import SELECTOR_MAX_LENGTH, SELECTOR_PATTERN, check_selector

Source = Literal["players", "store_items", "fx_rates"]
SOURCES: tuple[str, ...] = get_args(Source)  # the batch sources (ingestion.batch.launch.SOURCES)
Target = Literal["local", "bigquery"]
# the window loaded when none is given: every export the bucket holds
EARLIEST = date(2015, 1, 1)
F = TypeVar("F", bound=Callable[..., Any])

# one dbt selector (flows.dbt.check_selector); the deployment's parameter schema carries the same
# pattern, so the API refuses a bad one when the run is created
Selector = Annotated[str, AfterValidator(check_selector),
                     WithJsonSchema({"type": "string", "pattern": SELECTOR_PATTERN, "maxLength": SELECTOR_MAX_LENGTH})]


class DbtVars(BaseModel):
    """The dbt vars a run may set (declared in dbt_project.yml or read by the models), typed and
    bounded. start_date and end_date come from the run's start and end; bronze_tables is the
    project's, not a run's. The macros check each value again before it becomes a SQL literal."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # hours of arrivals an incremental model reads again before its newest row
    arrival_lookback_hours: StrictInt | None = Field(default=None, ge=0, le=168)
    # the quality gate's reconciliations cover this many hours of arrivals (unset: all history)
    reconcile_hours: StrictInt | None = Field(default=None, ge=1, le=24 * 366)
    # source freshness warns when the newest event is older than this
    freshness_warn_hours: StrictInt | None = Field(default=None, ge=1, le=24 * 31)
    # a local build keeps only the last N days of events
    dev_days: StrictInt | None = Field(default=None, ge=1, le=3660)
    # the date dimension's span
    calendar_start: date | None = None
    calendar_end: date | None = None

    @model_validator(mode="before")
    @classmethod
    def _not_reserved(cls, data: Any) -> Any:
        reserved = {"start_date", "end_date"} & set(data) if isinstance(data, dict) else set()
        if reserved:
            raise ValueError(f"vars: {sorted(reserved)} are set from start/end, not from vars")
        return data

    @model_validator(mode="after")
    def _calendar(self) -> "DbtVars":
        if self.calendar_start and self.calendar_end and self.calendar_start > self.calendar_end:
            raise ValueError(f"vars: calendar_start ({self.calendar_start}) is after calendar_end ({self.calendar_end})")
        return self

    def for_dbt(self) -> dict[str, Any]:
        """The vars that are set, as dbt's --vars takes them (dates as YYYY-MM-DD)."""
        return self.model_dump(mode="json", exclude_none=True)


class PipelineParameters(BaseModel):
    """The pipeline flow's parameters, declared here only (the flow takes these fields, see
    declared_by), checked together before anything runs; an error names the parameter."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: Target = "local"
    sources: list[Source] = Field(default_factory=lambda: list(SOURCES))
    select: list[Selector] = Field(default_factory=list)
    exclude: list[Selector] = Field(default_factory=list)
    full_refresh: bool = False
    start: date | None = None
    end: date | None = None
    vars: DbtVars = Field(default_factory=DbtVars)
    freshness: bool = True
    # the notification block ("<type-slug>/<name>") failures are sent to; unset: GA_NOTIFY_BLOCK's
    notify_block: str | None = None
    dbt_timeout_s: int = Field(default=3600, gt=0)
    dataflow_timeout_s: int = Field(default=7200, gt=0)
    max_rejected_share: float = Field(default=DEFAULT_MAX_REJECTED_SHARE, ge=0, le=1)
    # without start: daily exports of the last batch_days days (a daily run) instead of every one
    batch_days: int | None = Field(default=None, gt=0)
    # only the exports new or changed since they were last loaded (an hourly run; local bronze)
    changed_only: bool = False
    # also publish the dbt docs next to the KPI report (the daily runs)
    docs: bool = False

    @field_validator("sources")
    @classmethod
    def _unique_sources(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"sources: each source at most once, got {value}")
        return value

    @model_validator(mode="after")
    def _window(self) -> "PipelineParameters":
        if self.start and self.end and self.start > self.end:
            raise ValueError(f"start ({self.start}) is after end ({self.end})")
        if self.changed_only and self.target != "local":
            raise ValueError("changed_only: the loaded exports' versions are kept in the local bronze; "
                             f"on target {self.target}, set batch_days instead")
        return self

    def window(self, today: date) -> tuple[date, date]:
        earliest = today - timedelta(days=self.batch_days) if self.batch_days else EARLIEST
        return self.start or earliest, self.end or today + timedelta(days=1)


def declared_by(model: type[BaseModel]) -> Callable[[F], F]:
    """Give a flow function `def f(**parameters)` the model's fields as its keyword parameters,
    with their types and defaults, in their order: Prefect then lists them flat in the deployment's
    parameter schema (`-p full_refresh=true`, prefect.yaml's `parameters:`) and checks each one's
    type when a run starts, while the model, the one place they are declared, checks them together."""
    def apply(fn: F) -> F:
        fn.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=field.annotation,
                               default=inspect.Parameter.empty if field.is_required()
                               else field.get_default(call_default_factory=True))
             for name, field in model.model_fields.items()],
            return_annotation=inspect.signature(fn).return_annotation)
        return fn
    return apply
