"""The whole platform in a Google Cloud project, in one ordered, idempotent, re-runnable command:

    .venv/bin/python -m deployments.gcp.setup --project P [--region europe-west1] [--dry-run]

``--dry-run`` prints every gcloud / bq / docker / kubectl / helm / prefect command in order and runs
nothing. A step whose resource exists is skipped; grants and settings are re-applied (they are
idempotent), so after a change the command is simply run again. Before a real run: ``gcloud auth
login``, ``prefect cloud login`` (the workspace the flows run in), Docker, Helm, kubectl, and
``PREFECT_API_KEY`` set to the worker's API key (a Prefect Cloud service account's key); on the
first run also ``GA_SLACK_WEBHOOK_URL``, which goes to Secret Manager. Both are read on stdin by
the commands that store them and never printed.

In order: APIs; service accounts; buckets; datasets; Artifact Registry; the flows' and the Dataflow
workers' grants (least privilege: README.md, "Security", lists every role and why); the streaming
path (``deployments.streaming.deploy``: Pub/Sub, bronze tables, the function, dead letters and
their alert); the batch load's image and Flex Template; the GKE Autopilot cluster, namespaces,
Workload Identity, the worker's Role; Prefect blocks and automations; the worker (Helm, pinned
chart) with the pool's base job template; the `warehouse` queue; ``prefect deploy``.
"""
from __future__ import annotations

import argparse
from typing import Final

from deployments.gcp import gke
from deployments.gcp.target import DATAFLOW_ACCOUNT_ID, FLOWS_ACCOUNT_ID, GIT_COMMIT, WEBHOOK_SECRET, Target, gcloud
from deployments.streaming import deploy
from deployments.streaming.deploy import Step, dataset_step

APIS: Final = (
    *deploy.APIS,
    "container.googleapis.com",
    "dataflow.googleapis.com",
    "compute.googleapis.com",
    "storage.googleapis.com",
    "secretmanager.googleapis.com",
    "sqladmin.googleapis.com",
    "iamcredentials.googleapis.com",
)
AUDIT_DATASET_DAYS: Final = 30  # stored test failures (dbt store_failures) expire after this


def member(email: str) -> str:
    return f"--member=serviceAccount:{email}"


def project_grant(t: Target, email: str, role: str, why: str) -> Step:
    return Step(why, gcloud(t, "projects", "add-iam-policy-binding", t.project, member(email), f"--role={role}",
                            "--condition=None"))


def bucket_grant(t: Target, bucket: str, email: str, role: str, why: str) -> Step:
    return Step(why, gcloud(t, "storage", "buckets", "add-iam-policy-binding", f"gs://{bucket}", member(email),
                            f"--role={role}"))


def dataset_grant(t: Target, dataset: str, email: str, role: str, why: str) -> Step:
    return Step(why, ("bq", "add-iam-policy-binding", member(email), f"--role={role}", f"{t.project}:{dataset}"))


def steps(t: Target) -> list[Step]:
    """Every step, in order (pure: builds the commands only)."""
    flows, dataflow = t.flows_account, t.dataflow_account
    bronze, silver, gold, audit = (t.dataset(x) for x in ("bronze", "silver", "gold", "dbt_test__audit"))
    out: list[Step] = [Step("enable APIs", gcloud(t, "services", "enable", *APIS))]

    # identities
    for account_id, what in ((FLOWS_ACCOUNT_ID, "flow runs (dbt on BigQuery, Dataflow launches)"),
                             (DATAFLOW_ACCOUNT_ID, "Dataflow workers of the batch loads")):
        out.append(Step(f"service account {account_id}",
                        gcloud(t, "iam", "service-accounts", "create", account_id, f"--display-name=game-analytics {what}"),
                        exists=gcloud(t, "iam", "service-accounts", "describe", t.account(account_id))))

    # storage: private buckets, uniform access, never public
    for bucket in (t.dataflow_bucket, t.templates_bucket, t.exports_bucket, t.reports_bucket):
        out.append(Step(f"bucket {bucket}",
                        gcloud(t, "storage", "buckets", "create", f"gs://{bucket}", f"--location={t.region}",
                               "--uniform-bucket-level-access", "--public-access-prevention"),
                        exists=gcloud(t, "storage", "buckets", "describe", f"gs://{bucket}")))

    # datasets: dbt only writes into datasets that exist (it never needs bigquery.datasets.create)
    out += [
        dataset_step(t.project, bronze, t.bq_location, deploy.BRONZE_DESCRIPTION),
        dataset_step(t.project, silver, t.bq_location, "Silver: cleaned, deduplicated, conformed (dbt)"),
        dataset_step(t.project, gold, t.bq_location, "Gold: dimensions, facts and marts (dbt)"),
        dataset_step(t.project, audit, t.bq_location, "Rows of failing dbt tests (store_failures), kept 30 days",
                     f"--default_table_expiration={AUDIT_DATASET_DAYS * 86400}"),
    ]

    out.append(Step("Artifact Registry repository game-analytics (flow and batch-load images)",
                    gcloud(t, "artifacts", "repositories", "create", "game-analytics", "--repository-format=docker",
                           f"--location={t.region}"),
                    exists=gcloud(t, "artifacts", "repositories", "describe", "game-analytics", f"--location={t.region}")))
    out.append(Step("the alert webhook's URL, in Secret Manager (read from GA_SLACK_WEBHOOK_URL the first time)",
                    gcloud(t, "secrets", "create", WEBHOOK_SECRET, "--replication-policy=automatic", "--data-file=-"),
                    exists=gcloud(t, "secrets", "describe", WEBHOOK_SECRET), stdin_env="GA_SLACK_WEBHOOK_URL"))

    # the flow runs' account
    out += [
        project_grant(t, flows, "roles/bigquery.jobUser", "flows: run BigQuery jobs (no data access by itself)"),
        dataset_grant(t, bronze, flows, "roles/bigquery.dataViewer", "flows: read bronze"),
        dataset_grant(t, silver, flows, "roles/bigquery.dataEditor", "flows: write silver"),
        dataset_grant(t, gold, flows, "roles/bigquery.dataEditor", "flows: write gold"),
        dataset_grant(t, audit, flows, "roles/bigquery.dataEditor", "flows: store failing test rows"),
        project_grant(t, flows, "roles/dataflow.developer", "flows: launch, watch and cancel Dataflow jobs"),
        Step("flows: launch Dataflow jobs that run as the workers' account (actAs; no other way to choose it)",
             gcloud(t, "iam", "service-accounts", "add-iam-policy-binding", dataflow, member(flows),
                    "--role=roles/iam.serviceAccountUser")),
        bucket_grant(t, t.templates_bucket, flows, "roles/storage.objectViewer", "flows: read the Flex Template spec, never write it"),
        bucket_grant(t, t.exports_bucket, flows, "roles/storage.objectViewer", "flows: list and read the daily exports"),
        bucket_grant(t, t.reports_bucket, flows, "roles/storage.objectUser", "flows: publish the KPI report and dbt docs"),
    ]
    # the Dataflow workers' account
    out += [
        project_grant(t, dataflow, "roles/dataflow.worker", "workers: run Dataflow work items"),
        project_grant(t, dataflow, "roles/bigquery.jobUser", "workers: run the BigQuery load jobs of the batch loads"),
        dataset_grant(t, bronze, dataflow, "roles/bigquery.dataEditor", "workers: write the batch tables of bronze"),
        bucket_grant(t, t.dataflow_bucket, dataflow, "roles/storage.objectAdmin", "workers: temp and staging files"),
        bucket_grant(t, t.exports_bucket, dataflow, "roles/storage.objectViewer", "workers: read the daily exports"),
        Step("workers: pull the batch-load image",
             gcloud(t, "artifacts", "repositories", "add-iam-policy-binding", "game-analytics", f"--location={t.region}",
                    member(dataflow), "--role=roles/artifactregistry.reader")),
        project_grant(t, dataflow, "roles/cloudsql.client", "workers: connect to Cloud SQL (Cloud SQL Python Connector)"),
        project_grant(t, dataflow, "roles/cloudsql.instanceUser", "workers: log in to Cloud SQL with IAM database authentication"),
    ]
    for secret in t.dataflow_secrets:
        out.append(Step(f"workers: read secret {secret}",
                        gcloud(t, "secrets", "add-iam-policy-binding", secret, member(dataflow),
                               "--role=roles/secretmanager.secretAccessor")))

    # the streaming path (its own service accounts, tables, function, dead letters and alert)
    seen = {s.command for s in out}
    out += [s for s in deploy.steps(t.streaming(), enable_apis=False) if s.command not in seen]

    # the batch load: one image, the Flex Template launcher and the workers' SDK container
    out += [
        Step("Docker may push to the registry", ("gcloud", "auth", "configure-docker", f"{t.region}-docker.pkg.dev", "--quiet")),
        Step("build the batch-load image",
             ("docker", "build", "--platform=linux/amd64", "-f", "deployments/dataflow/Dockerfile", "-t", t.dataflow_image, "."),
             exists=gcloud(t, "artifacts", "docker", "images", "describe", t.dataflow_image), needs=(GIT_COMMIT,)),
        Step("push the batch-load image", ("docker", "push", t.dataflow_image),
             exists=gcloud(t, "artifacts", "docker", "images", "describe", t.dataflow_image), needs=(GIT_COMMIT,)),
        Step("the Flex Template spec",
             gcloud(t, "dataflow", "flex-template", "build", t.template_path, f"--image={t.dataflow_image}",
                    "--sdk-language=PYTHON", "--metadata-file=deployments/dataflow/metadata.json"),
             needs=(GIT_COMMIT,)),
    ]
    return out + gke.cluster_steps(t) + gke.prefect_steps(t)


def lookups(t: Target) -> dict[str, tuple[str, ...]]:
    return {
        **deploy.lookups(t.streaming()),
        GIT_COMMIT: ("git", "rev-parse", "--short=12", "HEAD"),
        **gke.prefect_lookups(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--project", required=True)
    p.add_argument("--region", default=Target.region)
    p.add_argument("--dataset-prefix", default=Target.dataset_prefix)
    p.add_argument("--bq-location", default=Target.bq_location)
    p.add_argument("--cluster", default="game-analytics")
    p.add_argument("--dataflow-secret", action="append", default=[],
                   help="an existing Secret Manager secret the Dataflow workers may read (repeatable; none by default)")
    p.add_argument("--cloudsql-instance", default=None,
                   help="the operational database's Cloud SQL instance, project:region:instance (default PROJECT:REGION:studio)")
    p.add_argument("--cloudsql-database", default=Target.cloudsql_database)
    p.add_argument("--dry-run", action="store_true")
    args = p.parse_args(argv)
    target = Target(args.project, args.region, args.dataset_prefix, args.bq_location, args.cluster,
                    dataflow_secrets=tuple(args.dataflow_secret),
                    cloudsql_instance=args.cloudsql_instance, cloudsql_database=args.cloudsql_database)
    deploy.run_steps(steps(target), lookups(target), args.dry_run)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
