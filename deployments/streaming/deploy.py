"""Deploy the streaming path to a Google Cloud project, step by step and idempotently:

    .venv/bin/python -m deployments.streaming.deploy --project P [--region europe-west1] \\
        [--dataset-prefix game_analytics] [--bq-location EU] [--dry-run]

``--dry-run`` prints every command (README.md in this folder lists them too). A step whose
resource already exists is skipped, so the script can run again after a change.

What it sets up:

* service accounts: ``game-events-ingest`` (the function runs as it; it may only insert into the
  two bronze tables) and ``game-events-push`` (Eventarc pushes to the function as it; it may only
  invoke this function);
* topic ``game-events``; dead-letter topic ``game-events-dead-letter`` with a pull subscription
  (to inspect and replay dead letters);
* BigQuery ``<prefix>_bronze.game_events`` (partitioned by event date, clustered by game_id and
  event_name) and ``game_events_rejected`` (partitioned by ingest date, clustered by error_type),
  with table-level IAM for the ingest account;
* the gen2 function (built by ``deployments.streaming.build``), triggered by the topic with retry;
* on the trigger's subscription: dead-lettering after ``MAX_DELIVERY_ATTEMPTS`` and a retry
  backoff, and the IAM the Pub/Sub service agent needs to forward dead letters.
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from deployments.streaming import build, config

SCHEMA_DIR: Final = Path(__file__).resolve().parent / "schemas"
APIS: Final = (
    "cloudfunctions.googleapis.com",
    "run.googleapis.com",
    "cloudbuild.googleapis.com",
    "artifactregistry.googleapis.com",
    "eventarc.googleapis.com",
    "pubsub.googleapis.com",
    "bigquery.googleapis.com",
)
PUSH_ACCOUNT_ID: Final = "game-events-push"
# placeholders filled in when the step runs (looked up from the project)
PROJECT_NUMBER: Final = "{project_number}"
TRIGGER_SUBSCRIPTION: Final = "{trigger_subscription}"


@dataclass(frozen=True)
class Target:
    project: str
    region: str
    dataset_prefix: str
    bq_location: str
    source: Path

    @property
    def dataset(self) -> str:
        return f"{self.dataset_prefix}_bronze"

    @property
    def ingest_account(self) -> str:
        return f"{config.SERVICE_ACCOUNT_ID}@{self.project}.iam.gserviceaccount.com"

    @property
    def push_account(self) -> str:
        return f"{PUSH_ACCOUNT_ID}@{self.project}.iam.gserviceaccount.com"

    def table(self, name: str) -> str:
        return f"{self.project}:{self.dataset}.{name}"


@dataclass(frozen=True)
class Step:
    name: str
    command: tuple[str, ...]
    exists: tuple[str, ...] | None = None  # a command that succeeds when the step is already done
    needs: tuple[str, ...] = field(default=())  # placeholders the command uses


def gcloud(target: Target, *args: str) -> tuple[str, ...]:
    return ("gcloud", *args, f"--project={target.project}", "--quiet")


def steps(t: Target) -> list[Step]:
    """Every step, in order (pure: builds the commands only)."""
    service_agent = f"serviceAccount:service-{PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
    out = [
        Step("enable APIs", gcloud(t, "services", "enable", *APIS)),
        Step(
            "service account the function runs as",
            gcloud(t, "iam", "service-accounts", "create", config.SERVICE_ACCOUNT_ID,
                   "--display-name=Game events ingest (writes bronze game_events and game_events_rejected only)"),
            exists=gcloud(t, "iam", "service-accounts", "describe", t.ingest_account),
        ),
        Step(
            "service account Eventarc pushes as",
            gcloud(t, "iam", "service-accounts", "create", PUSH_ACCOUNT_ID,
                   "--display-name=Game events push (invokes the ingest function only)"),
            exists=gcloud(t, "iam", "service-accounts", "describe", t.push_account),
        ),
        Step("topic", gcloud(t, "pubsub", "topics", "create", config.TOPIC),
             exists=gcloud(t, "pubsub", "topics", "describe", config.TOPIC)),
        Step("dead-letter topic", gcloud(t, "pubsub", "topics", "create", config.DEAD_LETTER_TOPIC),
             exists=gcloud(t, "pubsub", "topics", "describe", config.DEAD_LETTER_TOPIC)),
        Step(
            "dead-letter pull subscription",
            gcloud(t, "pubsub", "subscriptions", "create", config.DEAD_LETTER_SUBSCRIPTION,
                   f"--topic={config.DEAD_LETTER_TOPIC}", "--ack-deadline=60", "--message-retention-duration=7d"),
            exists=gcloud(t, "pubsub", "subscriptions", "describe", config.DEAD_LETTER_SUBSCRIPTION),
        ),
        Step(
            "bronze dataset",
            ("bq", f"--location={t.bq_location}", "mk", "--dataset", f"{t.project}:{t.dataset}"),
            exists=("bq", "show", "--dataset", f"{t.project}:{t.dataset}"),
        ),
        Step(
            "table game_events",
            ("bq", f"--location={t.bq_location}", "mk", "--table",
             f"--schema={SCHEMA_DIR / 'game_events.json'}",
             "--time_partitioning_type=DAY", "--time_partitioning_field=event_timestamp",
             "--clustering_fields=game_id,event_name",
             "--description=Valid game events as delivered (duplicates included; silver deduplicates by event_id)",
             t.table("game_events")),
            exists=("bq", "show", t.table("game_events")),
        ),
        Step(
            "table game_events_rejected",
            ("bq", f"--location={t.bq_location}", "mk", "--table",
             f"--schema={SCHEMA_DIR / 'game_events_rejected.json'}",
             "--time_partitioning_type=DAY", "--time_partitioning_field=ingested_at",
             "--clustering_fields=error_type",
             "--description=Refused events and messages, one row each, with the reason",
             t.table("game_events_rejected")),
            exists=("bq", "show", t.table("game_events_rejected")),
        ),
    ]
    for table in ("game_events", "game_events_rejected"):
        out.append(Step(
            f"ingest account may insert into {table} (and nothing else)",
            ("bq", "add-iam-policy-binding", f"--member=serviceAccount:{t.ingest_account}",
             "--role=roles/bigquery.dataEditor", t.table(table)),
        ))
    out += [
        Step("stage the function source", (sys.executable, "-m", "deployments.streaming.build", f"--out={t.source}")),
        Step(
            "deploy the function",
            gcloud(t, "functions", "deploy", config.FUNCTION_NAME, "--gen2", f"--region={t.region}",
                   f"--runtime={config.RUNTIME}", f"--source={t.source}", f"--entry-point={config.ENTRY_POINT}",
                   f"--trigger-topic={config.TOPIC}", "--retry",
                   f"--memory={config.MEMORY_MB}Mi", f"--cpu={config.CPU}", f"--concurrency={config.CONCURRENCY}",
                   f"--min-instances={config.MIN_INSTANCES}", f"--max-instances={config.MAX_INSTANCES}",
                   f"--timeout={config.TIMEOUT_S}s",
                   f"--service-account={t.ingest_account}", f"--trigger-service-account={t.push_account}",
                   "--no-allow-unauthenticated",
                   "--set-env-vars=" + ",".join([
                       "GA_SINK=bigquery", f"GA_GCP_PROJECT={t.project}",
                       f"GA_BQ_DATASET_PREFIX={t.dataset_prefix}", f"GA_BQ_LOCATION={t.bq_location}",
                   ])),
        ),
        Step(
            "push account may invoke the function",
            gcloud(t, "functions", "add-invoker-policy-binding", config.FUNCTION_NAME, f"--region={t.region}",
                   f"--member=serviceAccount:{t.push_account}"),
        ),
        Step(
            "Pub/Sub service agent may publish dead letters",
            gcloud(t, "pubsub", "topics", "add-iam-policy-binding", config.DEAD_LETTER_TOPIC,
                   f"--member={service_agent}", "--role=roles/pubsub.publisher"),
            needs=(PROJECT_NUMBER,),
        ),
        Step(
            "Pub/Sub service agent may mint push tokens for the push account",
            gcloud(t, "iam", "service-accounts", "add-iam-policy-binding", t.push_account,
                   f"--member={service_agent}", "--role=roles/iam.serviceAccountTokenCreator"),
            needs=(PROJECT_NUMBER,),
        ),
        Step(
            "trigger subscription: dead-lettering and retry backoff",
            gcloud(t, "pubsub", "subscriptions", "update", TRIGGER_SUBSCRIPTION,
                   f"--dead-letter-topic={config.DEAD_LETTER_TOPIC}",
                   f"--max-delivery-attempts={config.MAX_DELIVERY_ATTEMPTS}",
                   f"--min-retry-delay={config.MIN_BACKOFF_S}s", f"--max-retry-delay={config.MAX_BACKOFF_S}s",
                   f"--ack-deadline={config.ACK_DEADLINE_S}"),
            needs=(TRIGGER_SUBSCRIPTION,),
        ),
        Step(
            "Pub/Sub service agent may take messages off the trigger subscription (to dead-letter them)",
            gcloud(t, "pubsub", "subscriptions", "add-iam-policy-binding", TRIGGER_SUBSCRIPTION,
                   f"--member={service_agent}", "--role=roles/pubsub.subscriber"),
            needs=(PROJECT_NUMBER, TRIGGER_SUBSCRIPTION),
        ),
    ]
    return out


def lookups(t: Target) -> dict[str, tuple[str, ...]]:
    """How each placeholder is found; the trigger subscription exists once the function does."""
    return {
        PROJECT_NUMBER: gcloud(t, "projects", "describe", t.project, "--format=value(projectNumber)"),
        TRIGGER_SUBSCRIPTION: (
            "sh", "-c",
            "gcloud eventarc triggers describe \"$(gcloud functions describe {fn} --gen2 --region={r} --project={p} "
            "--format='value(eventTrigger.trigger)')\" --format='value(transport.pubsub.subscription)'".format(
                fn=config.FUNCTION_NAME, r=t.region, p=t.project),
        ),
    }


def fill(command: Sequence[str], values: dict[str, str]) -> tuple[str, ...]:
    out = []
    for arg in command:
        for key, value in values.items():
            arg = arg.replace(key, value)
        out.append(arg)
    return tuple(out)


def run(t: Target, dry_run: bool, execute: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run) -> None:
    values: dict[str, str] = {}
    finders = lookups(t)
    for n, step in enumerate(steps(t), start=1):
        print(f"# {n}. {step.name}")
        if dry_run:
            for key in step.needs:
                if key not in values:
                    print(f"#    {key} = $({shlex.join(finders[key])})")
                    values[key] = key
            print(shlex.join(step.command))
            continue
        for key in step.needs:
            if key not in values:
                found = execute(finders[key], check=True, capture_output=True, text=True).stdout.strip()
                if not found:
                    raise RuntimeError(f"{key}: `{shlex.join(finders[key])}` printed nothing")
                values[key] = found
        if step.exists and execute(step.exists, capture_output=True, text=True).returncode == 0:
            print("#    already there")
            continue
        execute(fill(step.command, values), check=True, text=True, cwd=build.REPO_ROOT)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--project", required=True)
    p.add_argument("--region", default="europe-west1")
    p.add_argument("--dataset-prefix", default="game_analytics")
    p.add_argument("--bq-location", default="EU")
    p.add_argument("--source", type=Path, default=build.DEFAULT_OUT)
    p.add_argument("--dry-run", action="store_true")
    args = p.parse_args(argv)
    target = Target(args.project, args.region, args.dataset_prefix, args.bq_location, args.source)
    run(target, args.dry_run)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
