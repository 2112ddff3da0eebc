"""Daily exports in a bucket, on the Cloud Storage emulator through Beam's ``gs://`` file system
(the code path of the Dataflow launcher's check and of the pipeline): a bucket has no folder
objects, so the export folder is found by listing its prefix."""
from __future__ import annotations

import re
from datetime import date

import pytest

from ingestion.batch.launch import check_export_files
from ingestion.batch.sources import FX_RATES, SourceFileMissing, daily_bronze_file
from tests.rehearsal.conftest import Emulators, no_google_credentials

BUCKET = "studio-exports-listing"
HEADER = "date,currency,usd_per_unit\n"


@pytest.fixture
def bucket(emulators: Emulators, monkeypatch: pytest.MonkeyPatch) -> str:
    no_google_credentials(monkeypatch)
    target = emulators.storage.bucket(BUCKET)
    if not target.exists():
        emulators.storage.create_bucket(BUCKET)
    for name, text in (
        ("daily/fx_rates/fx_rates_2024-01-05.csv", HEADER + "2024-01-05,EUR,1.09\n"),
        ("daily/fx_rates/fx_rates_2024-01-08.csv", HEADER + "2024-01-08,EUR,1.10\n"),
        ("daily/fx_rates/README.txt", "not an export\n"),
        ("other/fx_rates/notes.txt", "no export here\n"),
    ):
        target.blob(name).upload_from_string(text)
    return f"gs://{BUCKET}"


def test_the_exports_of_the_window_are_found_under_the_bucket_prefix(bucket: str) -> None:
    files = FX_RATES.layout.files(f"{bucket}/daily", date(2024, 1, 1), date(2024, 1, 7))

    assert [(f.path, f.bronze_file, f.export_date) for f in files] == [
        (f"{bucket}/daily/fx_rates/fx_rates_2024-01-05.csv", daily_bronze_file(date(2024, 1, 5)), date(2024, 1, 5)),
    ]
    # the Dataflow launcher's check before a launch
    check_export_files("fx_rates", date(2024, 1, 1), date(2024, 1, 10), f"{bucket}/daily")


def test_a_prefix_with_objects_but_no_export_in_the_window_loads_nothing(bucket: str) -> None:
    assert FX_RATES.layout.files(f"{bucket}/other", date(2024, 1, 1), date(2024, 1, 7)) == []
    assert FX_RATES.layout.files(f"{bucket}/daily", date(2024, 2, 1), date(2024, 2, 7)) == []


def test_a_prefix_without_any_object_is_a_missing_folder_naming_the_path(bucket: str) -> None:
    with pytest.raises(SourceFileMissing, match=re.escape(f"export folder not found: {bucket}/nowhere/fx_rates")):
        check_export_files("fx_rates", date(2024, 1, 1), date(2024, 1, 10), f"{bucket}/nowhere")
