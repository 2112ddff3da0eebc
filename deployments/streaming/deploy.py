"""Deploy the streaming path to a Google Cloud project, step by step and idempotently:

    .venv/bin/python -m deployments.streaming.deploy --project P [--region europe-west1] \\
        [--dataset-prefix game_analytics] [--bq-location EU] [--dry-run]

``--dry-run`` prints every command. ``python -m deployments.gcp.setup`` runs these steps as part of
the whole platform's set-up. A step whose
resource already exists is skipped, so the script can run again after a change.

What it sets up:

* service accounts: ``game-events-ingest`` (the function runs as it; custom roles let it insert
  into the two bronze tables and nothing else) and ``game-events-push`` (Eventarc pushes to the
  function as it; it may only invoke this function);
* topic ``game-events``; dead-letter topic ``game-events-dead-letter`` with a pull subscription
  that keeps dead letters 31 days (to inspect and replay them), and an alert policy that fires when
  one is waiting;
* BigQuery ``<prefix>_bronze.game_events`` (partitioned by event date, clustered by game_id and
  event_name) and ``game_events_rejected`` (partitioned by ingest date, clustered by error_type,
  partitions deleted after ``REJECTED_RETENTION_DAYS``: raw payloads may hold personal data);
* the gen2 function, deployed from its folder ``ingestion/streaming`` as it is, triggered by the topic
  with retry;
* on the trigger's subscription: dead-lettering after ``MAX_DELIVERY_ATTEMPTS`` and a retry
  backoff, and the IAM the Pub/Sub service agent needs to forward dead letters.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from common import bronze
from common.settings import REPO_ROOT, PlatformSettings
from deployments.streaming import config

SCHEMA_DIR: Final = Path(__file__).resolve().parent / "schemas"
# the function's whole source, relative to the repository (where the commands run)
FUNCTION_SOURCE: Final = "ingestion/streaming"
APIS: Final = (
    "cloudfunctions.googleapis.com",
    "run.googleapis.com",
    "cloudbuild.googleapis.com",
    "artifactregistry.googleapis.com",
    "eventarc.googleapis.com",
    "pubsub.googleapis.com",
    "bigquery.googleapis.com",
    "monitoring.googleapis.com",
    "iam.googleapis.com",
)
PUSH_ACCOUNT_ID: Final = "game-events-push"
BRONZE_DESCRIPTION: Final = "Bronze: data as delivered (streaming events, batch snapshots and exports)"
# placeholders filled in when the step runs (looked up from the project)
PROJECT_NUMBER: Final = "{project_number}"
TRIGGER_SUBSCRIPTION: Final = "{trigger_subscription}"


@dataclass(frozen=True)
class Target:
    project: str
    region: str
    dataset_prefix: str
    bq_location: str

    @property
    def dataset(self) -> str:
        return bronze.dataset(self.dataset_prefix, "bronze")

    @property
    def ingest_account(self) -> str:
        return f"{config.SERVICE_ACCOUNT_ID}@{self.project}.iam.gserviceaccount.com"

    @property
    def push_account(self) -> str:
        return f"{PUSH_ACCOUNT_ID}@{self.project}.iam.gserviceaccount.com"

    def table(self, name: str) -> str:
        return f"{self.project}:{self.dataset}.{name}"

    def role(self, role_id: str) -> str:
        return f"projects/{self.project}/roles/{role_id}"


@dataclass(frozen=True)
class Step:
    name: str
    command: tuple[str, ...]
    exists: tuple[str, ...] | None = None  # a command that succeeds when the step is already done
    needs: tuple[str, ...] = field(default=())  # placeholders the command uses
    stdin: str | None = None  # text the command reads (a manifest); printed by the dry run
    stdin_env: str | None = None  # an environment variable the command reads on stdin (a secret; never printed)


def gcloud(target: Target, *args: str) -> tuple[str, ...]:
    return ("gcloud", *args, f"--project={target.project}", "--quiet")


def dataset_step(project: str, dataset: str, location: str, description: str, *options: str) -> Step:
    """Create a BigQuery dataset unless it exists (one definition, used by every set-up)."""
    return Step(
        f"dataset {dataset}",
        ("bq", f"--location={location}", "mk", "--dataset", f"--description={description}", *options,
         f"{project}:{dataset}"),
        exists=("bq", "show", "--dataset", f"{project}:{dataset}"),
    )


def custom_role_steps(project: str, role_id: str, title: str, permissions: Sequence[str]) -> list[Step]:
    """Create a project custom role unless it exists, then set exactly its permissions (re-runnable)."""
    return [
        Step(f"custom role {role_id}",
             ("gcloud", "iam", "roles", "create", role_id, f"--project={project}", f"--title={title}",
              f"--permissions={','.join(permissions)}", "--stage=GA", "--quiet"),
             exists=("gcloud", "iam", "roles", "describe", role_id, f"--project={project}")),
        Step(f"custom role {role_id}: exactly its permissions",
             ("gcloud", "iam", "roles", "update", role_id, f"--project={project}",
              f"--permissions={','.join(permissions)}", "--quiet")),
    ]


def steps(t: Target, enable_apis: bool = True) -> list[Step]:
    """Every step, in order (pure: builds the commands only)."""
    service_agent = f"serviceAccount:service-{PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
    rejected_expiration = str(config.REJECTED_RETENTION_DAYS * 86400)
    out = [Step("enable APIs", gcloud(t, "services", "enable", *APIS))] if enable_apis else []
    out += [
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
                   f"--topic={config.DEAD_LETTER_TOPIC}", "--ack-deadline=60",
                   f"--message-retention-duration={config.DEAD_LETTER_RETENTION_DAYS}d"),
            exists=gcloud(t, "pubsub", "subscriptions", "describe", config.DEAD_LETTER_SUBSCRIPTION),
        ),
        Step(
            "dead-letter subscription keeps messages the maximum time",
            gcloud(t, "pubsub", "subscriptions", "update", config.DEAD_LETTER_SUBSCRIPTION,
                   f"--message-retention-duration={config.DEAD_LETTER_RETENTION_DAYS}d"),
        ),
        dataset_step(t.project, t.dataset, t.bq_location, BRONZE_DESCRIPTION),
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
             f"--time_partitioning_expiration={rejected_expiration}",
             "--clustering_fields=error_type",
             "--description=Refused events and messages, one row each, with the reason",
             t.table("game_events_rejected")),
            exists=("bq", "show", t.table("game_events_rejected")),
        ),
        Step(
            "rejected events are deleted after their retention (raw payloads may hold personal data)",
            ("bq", "update", f"--time_partitioning_expiration={rejected_expiration}", t.table("game_events_rejected")),
        ),
        *custom_role_steps(t.project, config.INSERT_ROLE_ID, "Streaming insert into a table",
                           config.INSERT_ROLE_PERMISSIONS),
        *custom_role_steps(t.project, config.DATASET_GET_ROLE_ID, "Read a dataset's metadata",
                           config.DATASET_GET_ROLE_PERMISSIONS),
    ]
    for table in ("game_events", "game_events_rejected"):
        out.append(Step(
            f"ingest account may insert into {table} (and nothing else)",
            ("bq", "add-iam-policy-binding", f"--member=serviceAccount:{t.ingest_account}",
             f"--role={t.role(config.INSERT_ROLE_ID)}", t.table(table)),
        ))
    out.append(Step(
        "ingest account may read the bronze dataset's metadata (streaming inserts check it)",
        ("bq", "add-iam-policy-binding", f"--member=serviceAccount:{t.ingest_account}",
         f"--role={t.role(config.DATASET_GET_ROLE_ID)}", f"{t.project}:{t.dataset}"),
    ))
    out += [
        Step(
            "deploy the function",
            gcloud(t, "functions", "deploy", config.FUNCTION_NAME, "--gen2", f"--region={t.region}",
                   f"--runtime={config.RUNTIME}", f"--source={FUNCTION_SOURCE}", f"--entry-point={config.ENTRY_POINT}",
                   f"--trigger-topic={config.TOPIC}", "--retry",
                   f"--memory={config.MEMORY_MB}Mi", f"--cpu={config.CPU}", f"--concurrency={config.CONCURRENCY}",
                   f"--min-instances={config.MIN_INSTANCES}", f"--max-instances={config.MAX_INSTANCES}",
                   f"--timeout={config.TIMEOUT_S}s",
                   f"--service-account={t.ingest_account}", f"--trigger-service-account={t.push_account}",
                   "--no-allow-unauthenticated",
                   "--set-env-vars=" + ",".join([
                       "GA_SINK=bigquery", f"GA_GCP_PROJECT={t.project}", f"GA_BRONZE_DATASET={t.dataset}",
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
        Step(
            "alert policy: a dead letter is waiting",
            gcloud(t, "monitoring", "policies", "create", f"--policy-from-file={config.ALERT_POLICY_FILE}"),
            exists=("sh", "-c", "test -n \"$(gcloud monitoring policies list --project={p} --filter={f} "
                    "--format='value(name)')\"".format(p=t.project, f=shlex.quote(f'displayName="{alert_policy_name()}"'))),
        ),
    ]
    return out


def alert_policy_name() -> str:
    return json.loads((REPO_ROOT / config.ALERT_POLICY_FILE).read_text())["displayName"]


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


def printable(step: Step) -> str:
    """The command as a shell line (what the dry run prints); a secret read on stdin stays a name."""
    line = shlex.join(step.command)
    if step.stdin is not None:
        return f"{line} <<'EOF'\n{step.stdin.rstrip()}\nEOF"
    if step.stdin_env is not None:
        return f"printenv {step.stdin_env} | {line}"
    return line


def run_steps(all_steps: Sequence[Step], finders: dict[str, tuple[str, ...]], dry_run: bool,
              execute: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run) -> None:
    """Run the steps in order: a placeholder is looked up when a step first needs it; a step whose
    `exists` command succeeds is skipped. The dry run prints every command and runs nothing."""
    values: dict[str, str] = {}
    for n, step in enumerate(all_steps, start=1):
        print(f"# {n}. {step.name}")
        if dry_run:
            for key in step.needs:
                if key not in values:
                    print(f"#    {key} = $({shlex.join(finders[key])})")
                    values[key] = key
            print(printable(step))
            continue
        for key in step.needs:
            if key not in values:
                found = execute(finders[key], check=True, capture_output=True, text=True).stdout.strip()
                if not found:
                    raise RuntimeError(f"{key}: `{shlex.join(finders[key])}` printed nothing")
                values[key] = found
        if step.exists and execute(fill(step.exists, values), capture_output=True, text=True).returncode == 0:
            print("#    already there")
            continue
        stdin = step.stdin
        if step.stdin_env is not None:
            stdin = os.environ.get(step.stdin_env)
            if not stdin:
                raise RuntimeError(f"{step.name}: set {step.stdin_env} in the environment")
        execute(fill(step.command, values), check=True, text=True, cwd=REPO_ROOT, input=stdin)


def run(t: Target, dry_run: bool, execute: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run) -> None:
    run_steps(steps(t), lookups(t), dry_run, execute)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--project", required=True)
    defaults = PlatformSettings.model_fields
    p.add_argument("--region", default=defaults["gcp_region"].default)
    p.add_argument("--dataset-prefix", default=defaults["bq_dataset_prefix"].default)
    p.add_argument("--bq-location", default=defaults["bq_location"].default)
    p.add_argument("--dry-run", action="store_true")
    args = p.parse_args(argv)
    target = Target(args.project, args.region, args.dataset_prefix, args.bq_location)
    run(target, args.dry_run)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
