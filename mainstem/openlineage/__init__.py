"""OpenLineage events for every DVC stage run: one job per stage, one run per execution.

In: a stage name, the workspace's params, dvc.yaml and dvc.lock, the stage's metrics and the
validation reports. Out: START, then COMPLETE or FAIL (ABORT for a run a crash left open), each a
JSON line in the run's own file under `openlineage.events_dir`, and also sent to an HTTP endpoint
when one is configured. Events never change a stage's outputs: they are a record of executions,
not data, so nothing here is a DVC dependency of a stage.
"""
