"""Airflow's REST API as mainstem uses it, and the record of which Airflow serves a workspace.

In: an api-server URL and the file holding the admin password that Airflow's simple auth manager
generated; or a workspace. Out: JSON answers (a bearer token is fetched once per client); the
record `make airflow` and `make stack` write into the workspace they serve (`.airflow.json`,
git-ignored: the URL, the Airflow home and where the password is, never the password itself);
and the values of Airflow Variables for a workspace, read through that record, with where they
came from or why they could not be read. Only the standard library, so `mainstem status` and
`retrain explain` stay fast: importing Airflow itself takes seconds.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from mainstem.durable import read_json_object, write_json
from mainstem.errors import MainstemError

RECORD_FILE = ".airflow.json"


@dataclass
class AirflowApi:
    """A client of one api-server, logged in as admin with the generated password."""

    url: str
    password_file: Path
    # above the 60 s the api-server may wait on a locked SQLite database (airflow_sqlite)
    timeout: float = 75.0
    _token: str | None = None

    def _send(self, request: urllib.request.Request) -> Any:
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.loads(response.read() or b"null")

    def token(self) -> str:
        if self._token is None:
            password = json.loads(self.password_file.read_text())["admin"]
            request = urllib.request.Request(
                f"{self.url}/auth/token",
                data=json.dumps({"username": "admin", "password": password}).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            self._token = str(self._send(request)["access_token"])
        return self._token

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The JSON answer to `method path`; an HTTP error is a MainstemError with its code."""
        headers = {"Content-Type": "application/json"}
        if not path.startswith("/api/v2/monitor"):
            headers["Authorization"] = f"Bearer {self.token()}"
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode() if body is not None else None,
            headers=headers,
            method=method,
        )
        try:
            return self._send(request)
        except urllib.error.HTTPError as exc:
            raise MainstemError(f"{method} {path}: HTTP {exc.code} {exc.read()[:300]!r}") from exc
        except TimeoutError as exc:
            raise MainstemError(
                f"{method} {path}: {self.url} did not answer within {self.timeout:g} s"
            ) from exc

    def variable(self, key: str) -> str | None:
        """The Variable's value, or None when it is not set."""
        try:
            found = self.call("GET", f"/api/v2/variables/{quote(key, safe='')}")
        except MainstemError as exc:
            if "HTTP 404" in str(exc):
                return None
            raise
        return None if found is None else str(found["value"])


@dataclass(frozen=True)
class AirflowRecord:
    """Which Airflow serves a workspace: what `make airflow` or `make stack` last started for it."""

    url: str
    home: str
    password_file: str
    started_by: str

    def api(self, timeout: float) -> AirflowApi:
        return AirflowApi(self.url, Path(self.password_file), timeout)


def write_record(workspace: Path, record: AirflowRecord) -> None:
    write_json(workspace / RECORD_FILE, asdict(record))


def read_record(workspace: Path) -> AirflowRecord | None:
    """The workspace's Airflow record, or None when no Airflow was ever started for it."""
    found = read_json_object(workspace / RECORD_FILE)
    if found is None:
        return None
    try:
        return AirflowRecord(**{key: str(found[key]) for key in AirflowRecord.__dataclass_fields__})
    except KeyError as exc:
        raise MainstemError(
            f"{workspace / RECORD_FILE} lacks {exc}; delete it and restart `make airflow`"
        ) from None


@dataclass(frozen=True)
class VariablesRead:
    """Airflow Variables as read for a workspace.

    `values` is None when they could not be read (or Airflow was not asked); `where` names the
    Airflow asked, and `error` says why it could not be read.
    """

    values: dict[str, str | None] | None
    where: str
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# An Airflow that is up answers within this even on a busy machine (its API server shares
# two cores with the scheduler and the tasks); a stopped one refuses the connection at once.
READ_TIMEOUT_SECONDS = 15.0


def read_variables(
    workspace: Path, names: tuple[str, ...], timeout: float = READ_TIMEOUT_SECONDS
) -> VariablesRead:
    """The Variables `names` from the Airflow recorded for `workspace`.

    No record: `values` is None and `where` says so. A record whose Airflow does not answer (it
    was stopped), or answers but refuses the login: `values` is None and `error` says why, so
    the caller can say that Airflow cannot be reached rather than quietly use a default.
    """
    record = read_record(workspace)
    if record is None:
        return VariablesRead(None, f"no Airflow recorded for this workspace ({RECORD_FILE})")
    where = f"Airflow at {record.url} ({record.started_by}, recorded in {RECORD_FILE})"
    api = record.api(timeout)
    try:
        api.call("GET", "/api/v2/monitor/health")
    except (OSError, MainstemError) as exc:
        return VariablesRead(None, where, f"cannot be reached: {getattr(exc, 'reason', exc)}")
    try:
        values = {name: api.variable(name) for name in names}
    except (OSError, MainstemError, ValueError, KeyError) as exc:
        return VariablesRead(None, where, f"answers, but its Variables cannot be read: {exc!r}")
    return VariablesRead(values, where)
