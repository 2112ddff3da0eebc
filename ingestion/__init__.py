"""Everything that moves data into bronze: the event contract, the Cloud Function, the sinks,
the Beam pipelines and the game simulator. No Prefect imports here: this package runs inside
a Cloud Function and on Dataflow workers."""
