"""The batch load's pipeline entry point: the Flex Template's FLEX_TEMPLATE_PYTHON_PY_FILE, and a
command line for any runner.

    python -m ingestion.batch.main --source players --cloudsql_instance p:r:i --cloudsql_database ... \\
        --cloudsql_user ... --sink bigquery --bigquery_dataset game_analytics_bronze \\
        --runner DataflowRunner --project ... --region ... --temp_location gs://...

Options are the template's parameters (:mod:`ingestion.batch.parameters`) plus Beam's own. With the
BigQuery sink the job is submitted and this returns (on Dataflow the Flex Template launcher waits
for the submission only); with the local sink it runs here and promotes the staged files.
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from ingestion.batch.launch import LOCAL_RUNNER, local_runner
from ingestion.batch.load import build_load, check_inputs, run_to_landing
from ingestion.batch.options import load_spec


def main(argv: Sequence[str] | None = None) -> None:
    options = PipelineOptions(list(sys.argv[1:] if argv is None else argv))
    spec = load_spec(options)
    if spec.sink == "local":
        name = options.view_as(StandardOptions).runner or LOCAL_RUNNER
        runner = local_runner() if name == LOCAL_RUNNER else beam.runners.create_runner(name)
        logging.info("%s", run_to_landing(spec, runner, options, name))
        return
    files = [] if spec.reads_database else check_inputs(spec)
    pipeline = beam.Pipeline(options=options)
    build_load(pipeline, spec, files, staging_dir=None)
    pipeline.run()


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.INFO)
    main()
