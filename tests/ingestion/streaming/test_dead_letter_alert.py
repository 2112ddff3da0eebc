"""The dead-letter alert policy, as Cloud Monitoring reads it: any backlog in the dead-letter
subscription the deployment creates fires it."""
from __future__ import annotations

from datetime import timedelta

from google.cloud import monitoring_v3

from deployments.streaming import config
from common.settings import REPO_ROOT

POLICY = REPO_ROOT / "deployments" / "streaming" / "dead-letter-alert.json"


def test_the_alert_fires_on_any_backlog_of_the_dead_letter_subscription() -> None:
    policy = monitoring_v3.AlertPolicy.from_json(POLICY.read_text())  # unknown fields are an error
    assert policy.enabled and policy.severity == monitoring_v3.AlertPolicy.Severity.ERROR
    (condition,) = policy.conditions
    threshold = condition.condition_threshold
    assert threshold.filter.split(" AND ") == [
        'resource.type = "pubsub_subscription"',
        f'resource.labels.subscription_id = "{config.DEAD_LETTER_SUBSCRIPTION}"',
        'metric.type = "pubsub.googleapis.com/subscription/num_undelivered_messages"',
    ]
    assert threshold.comparison == monitoring_v3.ComparisonType.COMPARISON_GT and threshold.threshold_value == 0
    assert threshold.duration == timedelta(0) and threshold.trigger.count == 1
    (aggregation,) = threshold.aggregations
    assert aggregation.per_series_aligner == monitoring_v3.Aggregation.Aligner.ALIGN_MAX
    assert aggregation.alignment_period == timedelta(seconds=60)
    assert "ingestion.streaming.replay" in policy.documentation.content
