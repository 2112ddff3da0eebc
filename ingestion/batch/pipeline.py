"""The batch ingestion pipeline, one Beam graph for every source: a reader, then a sink.

Readers (each yields valid rows as Arrow record batches and rejected rows with their reason, both
keyed by the bronze file they belong to):

    export files -> CSV rows -> type and validate -> reject duplicated keys -> record batches
                    (ingestion/batch/export_reader.py)
    database table -> plan key ranges in one exported snapshot -> Reshuffle
                   -> read each range with COPY into Arrow -> type, validate, reject duplicates
                      (vectorised, a batch at a time; ingestion/batch/database_reader.py)

Sinks (chosen by options):

    local:    stage one Parquet file per bronze file, and one of its rejected rows; the launcher
              moves them into the landing area once the whole pipeline has succeeded, so a failed
              run leaves bronze untouched (ingestion/batch/local_sink.py)
    bigquery: batch file loads, one per table and run, replacing the snapshot table or the
              export dates read (ingestion/batch/bigquery.py), so a rerun replaces what the first
              run wrote

Every row read ends up either in bronze or in the rejected output with its reason; none is dropped.
The readers count the rows read, loaded and rejected (ingestion/batch/metrics.py).
"""
from __future__ import annotations

from typing import NamedTuple

from apache_beam.pvalue import PCollection

# the tags of a reader's two outputs
VALID = "valid"
REJECTED = "rejected"


class Loaded(NamedTuple):
    """What a reader hands to a sink."""

    valid: PCollection  # (bronze file, pa.RecordBatch)
    rejected: PCollection  # (bronze file, rejected row dict)
    bronze_files: tuple[str, ...]  # every bronze file the load replaces, even if it gets no row
