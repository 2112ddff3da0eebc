"""Everything that moves data into bronze: the event contract, the Cloud Function, the sinks
and the Beam pipelines. No Prefect imports here: this package runs inside
a Cloud Function and on Dataflow workers."""
