"""A stopped run's BigQuery jobs are cancelled at the client boundary: the real google-cloud-bigquery
client talks to a fake HTTP transport answering the BigQuery REST API's shapes (jobs.list,
jobs.cancel, jobs.get), which records every request."""
from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

import requests
from google.auth.credentials import AnonymousCredentials
from google.auth.transport.requests import AuthorizedSession
from google.cloud import bigquery

from flows.dbt_runs import cancel_bigquery_jobs
from common.settings import OrchestrationSettings

PROJECT = "studio-analytics"
RUN = "0b6f3c1e-5d2a-4c51-9a57-2f0e7e0c9d11"


def job(job_id: str, state: str, labels: dict[str, str]) -> dict:
    return {"kind": "bigquery#job", "id": f"{PROJECT}:EU.{job_id}", "state": state,
            "jobReference": {"projectId": PROJECT, "jobId": job_id, "location": "EU"},
            "configuration": {"jobType": "QUERY", "labels": labels, "query": {"query": "merge ...", "useLegacySql": False}},
            "status": {"state": state}, "statistics": {"creationTime": "1764892800000"}}


class FakeBigQuery(requests.adapters.BaseAdapter):
    def __init__(self, jobs: list[dict], polls_until_done: int = 1) -> None:
        super().__init__()
        self.jobs = {j["jobReference"]["jobId"]: j for j in jobs}
        self.requests: list[tuple[str, str, dict]] = []
        self.polls_until_done = polls_until_done
        self.cancelled: dict[str, int] = {}

    def send(self, request: requests.PreparedRequest, **kwargs) -> requests.Response:
        url = urlparse(request.url)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.requests.append((request.method, url.path, query))
        path = url.path.removeprefix("/bigquery/v2")
        if request.method == "GET" and path == f"/projects/{PROJECT}/jobs":
            listed = [j for j in self.jobs.values() if j["status"]["state"].lower() == query.get("stateFilter")]
            return self.respond({"kind": "bigquery#jobList", "jobs": listed})
        job_id = path.split("/jobs/")[1].split("/")[0]
        if request.method == "POST" and path.endswith("/cancel"):
            self.cancelled[job_id] = 0
            return self.respond({"kind": "bigquery#jobCancelResponse", "job": self.jobs[job_id]})
        if request.method == "GET":
            if job_id in self.cancelled:
                self.cancelled[job_id] += 1
                if self.cancelled[job_id] >= self.polls_until_done:
                    self.jobs[job_id]["status"] = {"state": "DONE", "errorResult": {"reason": "stopped", "message": "Job execution was cancelled"}}
            return self.respond({k: v for k, v in self.jobs[job_id].items() if k != "state"})
        return self.respond({"error": {"code": 404, "message": "not found"}}, 404)

    def respond(self, body: dict, status: int = 200) -> requests.Response:
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps(body).encode()
        response.headers["content-type"] = "application/json"
        return response

    def close(self) -> None:
        pass


def client_over(fake: FakeBigQuery) -> bigquery.Client:
    session = AuthorizedSession(AnonymousCredentials())  # what the client builds itself, minus the network
    session.mount("https://", fake)
    return bigquery.Client(project=PROJECT, credentials=AnonymousCredentials(), _http=session, location="EU")


def jobs() -> list[dict]:
    dbt = {"app": "game_analytics_dbt", "target": "bigquery"}
    return [job("merge_of_this_run", "RUNNING", {**dbt, "flow_run": RUN, "node_id": "model_game_analytics_fct_sessions"}),
            job("queued_of_this_run", "PENDING", {**dbt, "flow_run": RUN}),
            job("of_another_run", "RUNNING", {**dbt, "flow_run": "another"}),
            job("by_hand", "RUNNING", dbt),  # someone's dbt outside a flow run: not ours to cancel
            job("not_dbt", "RUNNING", {"team": "ads"})]


def test_the_runs_jobs_are_cancelled_and_awaited() -> None:
    fake = FakeBigQuery(jobs(), polls_until_done=2)
    cancelled = cancel_bigquery_jobs(OrchestrationSettings(target="bigquery", gcp_project=PROJECT), RUN, client=client_over(fake), poll_s=0)
    assert cancelled == ["merge_of_this_run", "queued_of_this_run"]
    posts = [(path, {"location": q["location"]}) for method, path, q in fake.requests if method == "POST"]
    assert posts == [(f"/bigquery/v2/projects/{PROJECT}/jobs/merge_of_this_run/cancel", {"location": "EU"}),
                     (f"/bigquery/v2/projects/{PROJECT}/jobs/queued_of_this_run/cancel", {"location": "EU"})]
    lists = [q for method, path, q in fake.requests if method == "GET" and path.endswith("/jobs")]
    assert [q["stateFilter"] for q in lists] == ["running", "pending"] and all(q["projection"] == "full" for q in lists)
    # it returned only once both were DONE
    assert all(fake.jobs[j]["status"]["state"] == "DONE" for j in cancelled)


def test_before_a_build_every_orphan_of_any_flow_run_is_cancelled() -> None:
    fake = FakeBigQuery(jobs())
    cancelled = cancel_bigquery_jobs(OrchestrationSettings(target="bigquery", gcp_project=PROJECT), None, client=client_over(fake), poll_s=0)
    assert cancelled == ["merge_of_this_run", "of_another_run", "queued_of_this_run"]
    assert fake.jobs["by_hand"]["status"]["state"] == "RUNNING" and fake.jobs["not_dbt"]["status"]["state"] == "RUNNING"
