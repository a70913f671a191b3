"""What a Celery worker of the local stack keeps to itself; the order a stack stops in."""

from __future__ import annotations

from pathlib import Path

from mainstem.local.celery_stack import CeleryServices, celery_settings, worker_settings
from mainstem.local.services import ProcessRecord
from mainstem.local.stack import stop_waves

FOLDER_KEYS = ("AIRFLOW_HOME", "AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__LOGGING__BASE_LOG_FOLDER")


def _overlap(a: Path, b: Path) -> bool:
    return a.is_relative_to(b) or b.is_relative_to(a)


def test_workers_share_no_folder_with_each_other_or_the_scheduler(tmp_path: Path) -> None:
    services = CeleryServices(tmp_path / "state", redis_port=6379)
    scheduler_home = tmp_path / "state" / "airflow"
    folders = {
        worker.name: [Path(worker_settings(worker.root, worker.name)[k]) for k in FOLDER_KEYS]
        for worker in services.celery_workers
    }
    assert sorted(folders) == ["worker-1", "worker-2"]
    one, two = folders.values()
    assert not any(_overlap(a, b) for a in one for b in two)
    assert not any(_overlap(a, scheduler_home) for a in one + two)
    assert not any(_overlap(a, services.broker.root) for a in one + two)


def test_each_worker_is_told_its_own_name(tmp_path: Path) -> None:
    services = CeleryServices(tmp_path, redis_port=6379, workers=3)
    names = [
        worker_settings(worker.root, worker.name)["MAINSTEM_WORKER_NAME"]
        for worker in services.celery_workers
    ]
    assert names == ["worker-1", "worker-2", "worker-3"]
    assert len({worker.node_name() for worker in services.celery_workers}) == 3


def test_task_results_go_to_the_metadata_database_not_the_broker() -> None:
    settings = celery_settings(
        "redis://127.0.0.1:6379/0", "postgresql+psycopg2://postgres@127.0.0.1:5432/airflow", 2
    )
    assert settings["AIRFLOW__CELERY__BROKER_URL"] == "redis://127.0.0.1:6379/0"
    assert settings["AIRFLOW__CELERY__RESULT_BACKEND"] == (
        "db+postgresql+psycopg2://postgres@127.0.0.1:5432/airflow"
    )
    assert settings["AIRFLOW__CELERY__WORKER_CONCURRENCY"] == "2"


def test_a_stack_stops_workers_then_airflow_then_the_services_they_use() -> None:
    names = [
        "postgres", "redis", "mlflow", "airflow api-server", "airflow scheduler",
        "celery worker-1", "celery worker-2",
    ]  # fmt: skip
    records = [ProcessRecord(name, pid, 0.0) for pid, name in enumerate(names, start=100)]
    waves = [[record.name for record in wave] for wave in stop_waves(records)]
    assert waves == [
        ["celery worker-1", "celery worker-2"],
        ["airflow api-server", "airflow scheduler"],
        ["redis", "mlflow"],
    ]


def test_a_local_stack_stops_airflow_before_mlflow() -> None:
    names = ["postgres", "mlflow", "airflow api-server", "airflow scheduler"]
    records = [ProcessRecord(name, pid, 0.0) for pid, name in enumerate(names, start=100)]
    waves = [[record.name for record in wave] for wave in stop_waves(records)]
    assert waves == [["airflow api-server", "airflow scheduler"], ["mlflow"]]
