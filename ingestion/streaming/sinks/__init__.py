"""Where validated events and rejections go: local Parquet files (the embedded twin) or BigQuery,
as the function's settings choose."""
from __future__ import annotations

from pathlib import Path

from ..settings import FunctionSettings
from .base import Sink, SinkRowError, TransientSinkError
from .bigquery import BigQuerySink
from .local import LocalSink

__all__ = ["BigQuerySink", "LocalSink", "Sink", "SinkRowError", "TransientSinkError", "sink_from_settings"]


def sink_from_settings(settings: FunctionSettings) -> Sink:
    """The sink the settings choose: local Parquet files or BigQuery."""
    if settings.sink == "local":
        return LocalSink(Path(settings.required("landing_dir")))
    if settings.sink == "bigquery":
        return BigQuerySink(str(settings.required("gcp_project")), str(settings.required("bronze_dataset")))
    raise ValueError(f"sink: expected 'local' or 'bigquery', got {settings.sink!r}")
