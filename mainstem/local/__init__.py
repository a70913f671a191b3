"""Running mainstem on one machine: the demo, sample data, the local Airflow and services."""
