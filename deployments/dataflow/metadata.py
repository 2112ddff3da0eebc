"""The Flex Template's metadata (``metadata.json`` here, read by ``gcloud dataflow flex-template
build``), generated from the batch load's parameters so the two never differ:

    .venv/bin/python -m deployments.dataflow.metadata   # rewrites deployments/dataflow/metadata.json
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ingestion.batch.parameters import PARAMETERS
from ingestion.batch.rejected import REJECTED_TABLE
from ingestion.batch.sources import BATCH_SOURCES

METADATA_FILE = Path(__file__).with_name("metadata.json")
TEMPLATE_NAME = "game-analytics-batch-load"


def metadata() -> dict[str, Any]:
    databases = " and ".join(name for name, source in BATCH_SOURCES.items() if source.database is not None)
    exports = " and ".join(name for name, source in BATCH_SOURCES.items() if source.database is None)
    return {
        "name": TEMPLATE_NAME,
        "description": (
            f"Loads one batch source ({databases} from the operational Cloud SQL for PostgreSQL database, with IAM "
            f"database authentication, or {exports} daily CSV exports) into the bronze dataset with BigQuery file "
            "loads, replacing the snapshot table or the export dates' partitions. Invalid rows go to "
            f"{REJECTED_TABLE} with their source and reason."
        ),
        "streaming": False,
        "parameters": [
            {
                "name": parameter.name,
                "label": parameter.label,
                "helpText": parameter.help_text,
                **({"regexes": parameter.regexes} if parameter.regexes else {}),
                "isOptional": not parameter.required,
            }
            for parameter in PARAMETERS
        ],
    }


def render() -> str:
    return json.dumps(metadata(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    METADATA_FILE.write_text(render())
