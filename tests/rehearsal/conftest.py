"""The production rehearsal's services: the BigQuery and Cloud Storage emulators on loopback
(deployments/local/emulators.py), reached by the production clients through the endpoints they
honour, and the production clients pointed at them."""
from __future__ import annotations

from pathlib import Path
from collections.abc import Mapping, Sequence
from typing import Any, Iterator, NamedTuple

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery, storage

from deployments.local.emulators import bigquery_emulator, emulators_unavailable_reason, gcs_emulator
from ingestion.batch.bigquery import Destination, clear_rows, empty_when_no_row, json_row

PROJECT = "ga-rehearsal"
EXPORTS_BUCKET = "ga-rehearsal-exports"


class Emulators(NamedTuple):
    bigquery_host: str  # BIGQUERY_EMULATOR_HOST
    storage_host: str  # STORAGE_EMULATOR_HOST
    bigquery: bigquery.Client
    storage: storage.Client


@pytest.fixture(scope="package")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulators]:
    reason = emulators_unavailable_reason()
    if reason is not None:
        pytest.fail(f"the production rehearsal needs its emulators: {reason}", pytrace=False)
    home = tmp_path_factory.mktemp("emulators")
    with bigquery_emulator(home, PROJECT) as bigquery_host, gcs_emulator(home) as storage_host:
        with pytest.MonkeyPatch.context() as monkeypatch:
            monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", bigquery_host)
            monkeypatch.setenv("STORAGE_EMULATOR_HOST", storage_host)
            yield Emulators(
                bigquery_host,
                storage_host,
                bigquery.Client(project=PROJECT, credentials=AnonymousCredentials()),
                storage.Client(project=PROJECT, credentials=AnonymousCredentials()),
            )


def no_google_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The emulators take any caller; this machine has no Google credentials. The production code
    that builds its clients from Application Default Credentials (the function's sink) gets
    anonymous ones, and Beam's gs:// file system connects anonymously at once, as it does after
    its credential look-up retries (20 s) fail."""
    import google.auth
    from apache_beam.internal.gcp import auth

    monkeypatch.setattr(google.auth, "default", lambda *args, **kwargs: (AnonymousCredentials(), PROJECT))
    monkeypatch.setattr(auth._Credentials, "_credentials_init", True)
    monkeypatch.setattr(auth._Credentials, "_credentials", None)


def upload_folder(client: storage.Client, folder: Path, bucket: str, prefix: str) -> None:
    """Every file under ``folder`` to ``gs://bucket/prefix/<relative path>``."""
    target = client.bucket(bucket)
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            target.blob(f"{prefix}/{path.relative_to(folder).as_posix()}").upload_from_filename(str(path))


def write_as_the_sink(client: bigquery.Client, table_id: str, destination: Destination,
                      rows: Sequence[Mapping[str, Any]]) -> None:
    """One run's write of one bronze table as the Beam graph of ingestion/batch/bigquery.py does
    it, with its own jobs and load configuration: the delete of what the run replaces (or, for a
    whole table and no row, the load of no rows), then one load job of the run's rows."""
    if destination.clear is not None:
        clear_rows(client, table_id, destination)
    else:
        empty_when_no_row(len(rows), lambda: client, table_id, destination)
    if rows:
        client.load_table_from_json([json_row(row) for row in rows], table_id, job_config=destination.load).result()
