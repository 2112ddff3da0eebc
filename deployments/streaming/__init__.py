"""Production set-up of the streaming path: Pub/Sub topic and dead-letter topic, the gen2 Cloud
Function that validates events, the two bronze tables in BigQuery and the service account that
may write only them. See README.md in this folder."""
