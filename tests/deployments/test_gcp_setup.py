"""The one Google Cloud set-up, checked on its dry run (the commands it prints, in order): every
resource a step uses was created by an earlier step; every account holds exactly the roles the
README's security table lists, nothing public and no key files; dbt finds every dataset it writes
already there, with write access; the dead letters are kept and alerted on; the production
deployments get every setting they template, the Dataflow SDK image included."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.cloud import monitoring_v3
from prefect.utilities.templating import apply_values

from deployments.gcp import gke, setup
from deployments.streaming import config as streaming
from common.settings import REPO_ROOT
from tests.deployments.test_prefect_yaml import PRODUCTION, deployments

PROJECT = setup.Target.example().project
PREFIX = setup.Target.example().dataset_prefix


@dataclass(frozen=True)
class Printed:
    name: str
    argv: tuple[str, ...]
    stdin: str | None


def dry_run(*extra: str) -> list[Printed]:
    """Run the set-up's dry run as an operator would and split what it prints into commands."""
    out = subprocess.run([sys.executable, "-m", "deployments.gcp.setup", f"--project={PROJECT}", "--dry-run", *extra],
                         cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=120).stdout
    printed: list[Printed] = []
    blocks = re.split(r"^# \d+\. ", out, flags=re.M)[1:]
    for block in blocks:
        name, *lines = block.splitlines()
        lines = [line for line in lines if not line.startswith("#    ")]
        command, rest = lines[0], lines[1:]
        stdin = None
        if command.endswith(" <<'EOF'"):
            command, stdin = command[: -len(" <<'EOF'")], "\n".join(rest[: rest.index("EOF")])
        elif command.startswith("printenv "):
            command = command.split(" | ", 1)[1]
        printed.append(Printed(name, tuple(shlex.split(command)), stdin))
    return printed


@pytest.fixture(scope="module")
def commands() -> list[Printed]:
    return dry_run()


def test_the_dry_run_prints_every_step_and_runs_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a dry run ran a command")

    target = setup.Target.example()
    setup.deploy.run_steps(setup.steps(target), setup.lookups(target), dry_run=True, execute=refuse)  # type: ignore[arg-type]
    assert capsys.readouterr().out.count("\n# ") >= len(setup.steps(target))


def text(p: Printed) -> str:
    return " ".join(p.argv)


# what creates each kind of resource, and how a later command refers to it
CREATES = [
    ("account", re.compile(r"^gcloud iam service-accounts create (\S+)"), lambda m: f"{m[1]}@{PROJECT}.iam.gserviceaccount.com"),
    ("bucket", re.compile(r"^gcloud storage buckets create gs://(\S+)"), lambda m: m[1]),
    ("dataset", re.compile(r"^bq \S+ mk --dataset .* \S+:(\S+)$"), lambda m: m[1]),
    ("table", re.compile(r"^bq \S+ mk --table .* \S+:(\S+)$"), lambda m: m[1]),
    ("topic", re.compile(r"^gcloud pubsub topics create (\S+)"), lambda m: m[1]),
    ("subscription", re.compile(r"^gcloud pubsub subscriptions create (\S+)"), lambda m: m[1]),
    ("role", re.compile(r"^gcloud iam roles create (\S+)"), lambda m: f"projects/{PROJECT}/roles/{m[1]}"),
    ("repository", re.compile(r"^gcloud artifacts repositories create (\S+) .*--location=(\S+)"),
     lambda m: f"{m[2]}-docker.pkg.dev/{PROJECT}/{m[1]}"),
    ("secret", re.compile(r"^gcloud secrets create (\S+)"), lambda m: m[1]),
    ("cluster", re.compile(r"^gcloud container clusters create-auto (\S+)"), lambda m: m[1]),
    ("namespace", re.compile(r"^kubectl create namespace (\S+)"), lambda m: m[1]),
    ("ksa", re.compile(r"^kubectl create serviceaccount (\S+) --namespace=(\S+)"), lambda m: f"{m[2]}/{m[1]}"),
    ("function", re.compile(r"^gcloud functions deploy (\S+)"), lambda m: m[1]),
    ("image", re.compile(r"^docker push (\S+)"), lambda m: m[1]),
    ("template", re.compile(r"^gcloud dataflow flex-template build (\S+)"), lambda m: m[1]),
    ("helm repo", re.compile(r"^helm repo add .*? (prefect) "), lambda m: m[1]),
    ("worker", re.compile(r"^helm upgrade --install (\S+)"), lambda m: m[1]),
]
USES = [
    ("account", re.compile(r"([a-z0-9-]+@" + re.escape(PROJECT) + r"\.iam\.gserviceaccount\.com)")),
    ("bucket", re.compile(r"gs://([a-z0-9-]+)")),
    ("table", re.compile(re.escape(PROJECT) + r":(\w+\.\w+)\b")),
    ("dataset", re.compile(re.escape(PROJECT) + r":(\w+)(?:\.\w+)?(?:\s|$)")),
    ("topic", re.compile(r"(?:--topic=|--trigger-topic=|--dead-letter-topic=|topics add-iam-policy-binding )([a-z-]+)")),
    ("subscription", re.compile(r"subscriptions update ([a-z-]+)")),
    ("role", re.compile(r"--role=(projects/\S+)")),
    ("repository", re.compile(r"([a-z0-9-]+-docker\.pkg\.dev/" + re.escape(PROJECT) + r"/[a-z-]+)")),
    ("secret", re.compile(r"secrets add-iam-policy-binding (\S+)|/secrets/([\w-]+)")),
    ("cluster", re.compile(r"clusters get-credentials (\S+)")),
    ("namespace", re.compile(r"--namespace=(\S+)")),
    ("ksa", re.compile(r"svc\.id\.goog\[(\S+)\]|serviceaccount (\S+) --namespace=(\S+)")),
    ("function", re.compile(r"functions add-invoker-policy-binding (\S+)")),
    ("image", re.compile(r"--image=(\S+)|GA_DATAFLOW_SDK_IMAGE=(\S+)")),
    ("template", re.compile(r"GA_DATAFLOW_TEMPLATE_PATH=(\S+)")),
    ("helm repo", re.compile(r" (prefect)/prefect-worker")),
    ("worker", re.compile(r"work-queue create .*--pool=(\S+)")),
]


def test_every_resource_a_step_uses_was_created_by_an_earlier_step(commands: list[Printed]) -> None:
    created: dict[tuple[str, str], int] = {}
    for i, p in enumerate(commands):
        line = text(p)
        for kind, pattern, name in CREATES:
            if m := pattern.search(line):
                created.setdefault((kind, name(m)), i)
    expected = {("bucket", f"{PROJECT}-exports"), ("bucket", f"{PROJECT}-dataflow"), ("bucket", f"{PROJECT}-dataflow-templates"),
                *(("dataset", f"{PREFIX}_{x}") for x in ("bronze", "silver", "gold", "dbt_test__audit")),
                ("account", f"ga-flows@{PROJECT}.iam.gserviceaccount.com"), ("account", f"ga-dataflow@{PROJECT}.iam.gserviceaccount.com"),
                ("subscription", streaming.DEAD_LETTER_SUBSCRIPTION), ("cluster", "game-analytics"), ("ksa", "game-analytics/game-analytics-flows")}
    assert expected <= set(created), expected - set(created)

    used = 0
    for i, p in enumerate(commands):
        line = text(p) + ("\n" + p.stdin if p.stdin else "")
        for kind, pattern in USES:
            for m in pattern.finditer(line):
                ref = next(g for g in m.groups() if g)
                if kind == "ksa" and m[2]:  # `serviceaccount NAME --namespace=NS`
                    ref = f"{m[3]}/{m[2]}"
                if kind == "worker" and ref == gke.WORK_POOL:
                    ref = gke.WORKER_RELEASE  # the worker creates its pool when it starts
                if kind == "image" and ":" not in ref.rsplit("/", 1)[-1]:
                    continue
                used += 1
                assert (kind, ref) in created, f"step {i + 1} ({p.name}) uses {kind} {ref}, which no step creates"
                assert created[(kind, ref)] <= i, f"step {i + 1} ({p.name}) uses {kind} {ref} before step {created[(kind, ref)] + 1} creates it"
    assert used > 50


def test_the_streaming_steps_are_reused_not_repeated(commands: list[Printed]) -> None:
    argvs = [(p.argv, p.stdin) for p in commands]
    assert len(argvs) == len(set(argvs))
    assert sum(1 for a, _ in argvs if a[:3] == ("gcloud", "functions", "deploy")) == 1
    assert sum(1 for a, _ in argvs if a[:2] == ("gcloud", "services")) == 1
    assert sum(1 for a, _ in argvs if a[:4] == ("bq", "--location=EU", "mk", "--dataset")) == 4


def member_name(member: str) -> str:
    member = member.removeprefix("serviceAccount:")
    if "@gcp-sa-pubsub." in member:
        return "Pub/Sub service agent"
    if m := re.fullmatch(r".*\.svc\.id\.goog\[(.+)\]", member):
        return m[1]
    return member.removesuffix(f"@{PROJECT}.iam.gserviceaccount.com")


def grants(commands: list[Printed]) -> set[tuple[str, str, str]]:
    """(account, role, on what) of every IAM binding the set-up makes."""
    out = set()
    for p in commands:
        a = p.argv
        line = text(p)
        if "policy-binding" not in line:
            continue
        flags = dict(arg[2:].split("=", 1) for arg in a if arg.startswith("--") and "=" in arg)
        account = member_name(flags["member"])
        role = flags.get("role", "roles/run.invoker").replace(f"projects/{PROJECT}/", "projects/<project>/")
        positional = [x for x in a if not x.startswith("-")]
        if a[:2] == ("bq", "add-iam-policy-binding"):
            resource = positional[-1].split(":", 1)[1]
            on = f"table {resource}" if "." in resource else f"dataset {resource}"
        elif a[1] == "projects":
            on = "project"
        elif a[1:3] == ("storage", "buckets"):
            on = "bucket " + positional[4].removeprefix("gs://").replace(PROJECT, "<project>")
        elif a[1:3] == ("iam", "service-accounts"):
            on = "service account " + member_name(positional[4])
        elif a[1:3] == ("artifacts", "repositories"):
            on = f"repository {positional[4]}"
        elif a[1] == "secrets":
            on = f"secret {positional[3]}"
        elif a[1] == "functions":
            on = f"function {positional[3]}"
        elif a[1:3] == ("pubsub", "topics"):
            on = f"topic {positional[4]}"
        elif a[1:3] == ("pubsub", "subscriptions"):
            on = "the function's trigger subscription"
        else:
            raise AssertionError(f"unknown binding: {line}")
        out.add((account, role, on))
    return out


def readme_allow_list() -> set[tuple[str, str, str]]:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("\n## Security\n", 1)[1].split("\n## ", 1)[0]
    rows = set()
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[1].startswith(("`roles/", "`projects/")):
            rows.add(tuple(c.replace("`", "") for c in cells[:3]))
    return rows


def test_every_account_holds_exactly_the_roles_the_readme_lists(commands: list[Printed]) -> None:
    made, allowed = grants(commands), readme_allow_list()
    assert allowed, "README.md: no Security table"
    assert made - allowed == set(), "granted but not in the README's security table"
    assert allowed - made == set(), "in the README's security table but never granted"


def test_least_privilege(commands: list[Printed]) -> None:
    made = grants(commands)
    roles = {role for _, role, _ in made}
    assert not roles & {"roles/owner", "roles/editor", "roles/viewer", "roles/bigquery.admin", "roles/storage.admin",
                        "roles/bigquery.dataOwner", "roles/iam.serviceAccountAdmin"}
    # data roles on datasets, tables and buckets only, never the whole project
    assert not {(a, r) for a, r, on in made if on == "project" and (".data" in r or r.startswith("roles/storage."))}
    # the ingest account: custom roles only, exactly the permissions of a streaming insert
    ingest = {(r, on) for a, r, on in made if a == streaming.SERVICE_ACCOUNT_ID}
    assert ingest == {
        ("projects/<project>/roles/gaStreamingInsert", f"table {PREFIX}_bronze.game_events"),
        ("projects/<project>/roles/gaStreamingInsert", f"table {PREFIX}_bronze.game_events_rejected"),
        ("projects/<project>/roles/gaDatasetGet", f"dataset {PREFIX}_bronze"),
    }
    role_permissions = {}
    for p in commands:
        if p.argv[:4] == ("gcloud", "iam", "roles", "update"):
            flags = dict(x[2:].split("=", 1) for x in p.argv if x.startswith("--") and "=" in x)
            role_permissions[p.argv[4]] = set(flags["permissions"].split(","))
    assert role_permissions == {"gaStreamingInsert": {"bigquery.tables.updateData", "bigquery.tables.get"},
                                "gaDatasetGet": {"bigquery.datasets.get"}}
    # the flows' account reads the template and the exports, writes only its reports
    flows_buckets = {(r, on) for a, r, on in made if a == setup.FLOWS_ACCOUNT_ID and on.startswith("bucket ")}
    assert flows_buckets == {("roles/storage.objectViewer", "bucket <project>-dataflow-templates"),
                             ("roles/storage.objectViewer", "bucket <project>-exports"),
                             ("roles/storage.objectUser", "bucket <project>-reports")}
    # only the flows' Kubernetes service account may act as the flows' account
    assert {a for a, r, on in made if r == "roles/iam.workloadIdentityUser"} == {"game-analytics/game-analytics-flows"}


def test_nothing_public_and_no_key_files(commands: list[Printed]) -> None:
    everything = "\n".join(text(p) + "\n" + (p.stdin or "") for p in commands)
    assert "allUsers" not in everything and "allAuthenticatedUsers" not in everything
    assert "--allow-unauthenticated" not in [arg for p in commands for arg in p.argv]
    assert "keys create" not in everything and "GOOGLE_APPLICATION_CREDENTIALS" not in everything
    assert not re.search(r"key-file|\.json\s*$", "\n".join(text(p) for p in commands if "iam" in p.argv), re.M)
    for p in commands:
        if p.argv[:4] == ("gcloud", "storage", "buckets", "create"):
            assert "--public-access-prevention" in p.argv and "--uniform-bucket-level-access" in p.argv
    # the worker's API key never appears in a command: it is read from the environment on stdin
    (secret,) = [p for p in commands if p.argv[:4] == ("kubectl", "create", "secret", "generic")]
    assert "--from-file=key=/dev/stdin" in secret.argv


def test_dbt_finds_every_dataset_it_writes_created_and_writable(commands: list[Printed], tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """dbt on the BigQuery target (parsed, not run): the datasets of its models and of the tests that
    store failures all exist before the flows run and the flows' account may write them, so dbt
    never needs bigquery.datasets.create."""
    from dbt.cli.main import dbtRunner

    for key, value in {"GA_TARGET": "bigquery", "GA_GCP_PROJECT": PROJECT, "GA_BQ_DATASET_PREFIX": PREFIX}.items():
        monkeypatch.setenv(key, value)
    dbt = str(REPO_ROOT / "dbt")
    result = dbtRunner().invoke(["parse", "--project-dir", dbt, "--profiles-dir", dbt, "--target-path",
                                 str(tmp_path / "target"), "--log-path", str(tmp_path), "--quiet"])
    assert result.success, result.exception
    manifest = json.loads((tmp_path / "target" / "manifest.json").read_text())
    written = {n["schema"] for n in manifest["nodes"].values()
               if n["resource_type"] in ("model", "seed", "snapshot") or n["config"].get("store_failures")}
    assert {f"{PREFIX}_silver", f"{PREFIX}_gold", f"{PREFIX}_dbt_test__audit"} <= written
    created = {p.argv[-1].split(":", 1)[1] for p in commands if p.argv[:1] == ("bq",) and "--dataset" in p.argv and "mk" in p.argv}
    assert written <= created, written - created
    flows = {on for a, r, on in grants(commands) if a == setup.FLOWS_ACCOUNT_ID and r == "roles/bigquery.dataEditor"}
    assert {f"dataset {d}" for d in written} == flows
    read = {n["schema"] for n in manifest["sources"].values()}
    assert read == {f"{PREFIX}_bronze"}
    assert (setup.FLOWS_ACCOUNT_ID, "roles/bigquery.dataViewer", f"dataset {PREFIX}_bronze") in grants(commands)


def test_dead_letters_are_kept_a_month_and_alerted_on(commands: list[Printed]) -> None:
    retention = [p for p in commands if p.argv[:3] == ("gcloud", "pubsub", "subscriptions")
                 and streaming.DEAD_LETTER_SUBSCRIPTION in p.argv]
    assert retention and all("--message-retention-duration=31d" in p.argv for p in retention)
    policy = monitoring_v3.AlertPolicy.from_json((REPO_ROOT / streaming.ALERT_POLICY_FILE).read_text())
    (condition,) = policy.conditions
    threshold = condition.condition_threshold
    assert 'metric.type = "pubsub.googleapis.com/subscription/num_undelivered_messages"' in threshold.filter
    assert f'resource.labels.subscription_id = "{streaming.DEAD_LETTER_SUBSCRIPTION}"' in threshold.filter
    assert threshold.comparison == monitoring_v3.ComparisonType.COMPARISON_GT and threshold.threshold_value == 0
    names = [p.name for p in commands]
    applied = [i for i, p in enumerate(commands) if p.argv[:4] == ("gcloud", "monitoring", "policies", "create")]
    assert applied and f"--policy-from-file={streaming.ALERT_POLICY_FILE}" in commands[applied[0]].argv
    assert names.index("dead-letter pull subscription") < applied[0]


def test_rejected_events_expire(commands: list[Printed]) -> None:
    table = f"{PROJECT}:{PREFIX}_bronze.game_events_rejected"
    expiring = [p for p in commands if p.argv[-1] == table and any(a.startswith("--time_partitioning_expiration=") for a in p.argv)]
    assert {p.argv[1] for p in expiring} >= {"update"}
    for p in expiring:
        (days,) = [int(a.split("=")[1]) / 86400 for a in p.argv if a.startswith("--time_partitioning_expiration=")]
        assert 0 < days <= 90


@pytest.mark.parametrize("name", PRODUCTION)
def test_every_production_deployment_gets_every_setting_it_templates(name: str, commands: list[Printed],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """`prefect deploy` writes an unset `{{ $VAR }}` as an empty value: the set-up's deploy step sets
    each one the deployment uses, the Dataflow SDK image the one the set-up built and pushed."""
    (step,) = [p for p in commands if "deploy" in p.argv and p.argv[0] == "env"]
    env = dict(arg.split("=", 1) for arg in step.argv[1:] if re.fullmatch(r"[A-Z_]+=.*", arg))
    raw = json.dumps(deployments()[name])
    wanted = set(re.findall(r"\{\{ \$(GA_\w+) \}\}", raw))
    assert wanted <= set(env), wanted - set(env)
    for key in list(os.environ):
        if key.startswith("GA_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    job_env = apply_values(deployments()[name], dict(os.environ), remove_notset=False)["work_pool"]["job_variables"]["env"]
    # every Dataflow setting without a default (the launch needs each one), and where the job reads from
    from common.settings import OrchestrationSettings
    needed = {f"GA_{name.upper()}" for name, f in OrchestrationSettings.model_fields.items()
              if name.startswith("dataflow_") and f.default is None} | {"GA_GCP_PROJECT", "GA_EXPORTS_URL"}
    assert "GA_DATAFLOW_SDK_IMAGE" in needed
    missing = {k for k in needed if not job_env.get(k) or "{{" in job_env[k]}
    assert not missing, f"{name}: no value for {missing}"
    image = job_env.get("GA_DATAFLOW_SDK_IMAGE")
    assert image and "{{" not in image, f"{name}: no Dataflow SDK image"
    pushed = [p.argv[2] for p in commands if p.argv[:2] == ("docker", "push")]
    assert [image] == pushed
    flex = [p for p in commands if p.argv[:4] == ("gcloud", "dataflow", "flex-template", "build")]
    assert f"--image={image}" in flex[0].argv and job_env["GA_DATAFLOW_TEMPLATE_PATH"] == flex[0].argv[4]


def test_a_dataflow_secret_is_granted_by_name_only(commands: list[Printed]) -> None:
    extra = grants(dry_run("--dataflow-secret=ga-postgres-password")) - grants(commands)
    assert extra == {(setup.DATAFLOW_ACCOUNT_ID, "roles/secretmanager.secretAccessor", "secret ga-postgres-password")}
