"""Where a workspace's OpenLineage events go: the `openlineage:` section of params.yaml.

In: the workspace root (its params.yaml) and the environment. Out: LineageSettings. The section is
optional (absent means the defaults below); no stage lists these keys as DVC params, because where
events are sent never changes what a stage produces.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mainstem.errors import ParamsError
from mainstem.params import SAFE_LOADER

SECTION = "openlineage"
DEFAULT_EVENTS_DIR = "lineage/openlineage"
# The environment variables openlineage-python itself reads to pick a transport.
ENVIRONMENT_TRANSPORT = ("OPENLINEAGE_URL", "OPENLINEAGE_CONFIG")
ENVIRONMENT_TRANSPORT_PREFIX = "OPENLINEAGE__TRANSPORT__"
# Its other settings (tags, filters, facets), and the files it reads them from besides
# OPENLINEAGE_CONFIG: openlineage.yml in the current directory, then in ~/.openlineage.
ENVIRONMENT_CONFIG_PREFIX = "OPENLINEAGE__"
CONFIG_FILE = "openlineage.yml"
# The run that started a stage, `namespace/job/run_id`, as the Airflow provider's macros give it
PARENT_ENV = "OPENLINEAGE_PARENT_ID"
ROOT_PARENT_ENV = "OPENLINEAGE_ROOT_PARENT_ID"


@dataclass(frozen=True)
class LineageSettings:
    enabled: bool
    namespace: str
    events_dir: Path
    url: str
    endpoint: str
    timeout_seconds: float

    @property
    def airflow_events_dir(self) -> Path:
        """Where the Airflow provider's own events go, beside the stages'."""
        return self.events_dir / "airflow"


def default_namespace(root: Path) -> str:
    return f"mainstem://{root.resolve().name}"


def _get(section: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    value = section.get(key, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ParamsError(
            f"params.yaml: {SECTION}.{key} must be a {kind.__name__}, not {value!r}; fix it"
        )
    return value


def parse_settings(root: Path, document: dict[str, Any]) -> LineageSettings:
    """The settings from params.yaml's parsed text; a ParamsError naming a wrong key."""
    section = document.get(SECTION) or {}
    if not isinstance(section, dict):
        raise ParamsError(f"params.yaml: {SECTION} must be a mapping of settings")
    events_dir = _get(section, "events_dir", str, DEFAULT_EVENTS_DIR)
    timeout = _get(section, "timeout_seconds", float, 5.0)
    if timeout <= 0:
        raise ParamsError(f"params.yaml: {SECTION}.timeout_seconds must be above 0")
    return LineageSettings(
        enabled=_get(section, "enabled", bool, True),
        namespace=_get(section, "namespace", str, "") or default_namespace(root),
        events_dir=root / events_dir,
        url=_get(section, "url", str, ""),
        endpoint=_get(section, "endpoint", str, "api/v1/lineage"),
        timeout_seconds=timeout,
    )


def load_settings(root: Path) -> LineageSettings:
    """The workspace's settings, with an absolute events folder (the Airflow provider writes there
    from processes started elsewhere)."""
    root = Path(root).resolve()
    text = (root / "params.yaml").read_text(encoding="utf-8")
    document = yaml.load(text, Loader=SAFE_LOADER) or {}
    return parse_settings(root, document)


def environment_transport(env: dict[str, str] | None = None) -> bool:
    """Whether the environment configures an openlineage-python transport of its own."""
    env = dict(os.environ) if env is None else env
    return any(env.get(name) for name in ENVIRONMENT_TRANSPORT) or any(
        name.startswith(ENVIRONMENT_TRANSPORT_PREFIX) and value for name, value in env.items()
    )


def disabled_by_environment(env: dict[str, str] | None = None) -> bool:
    """`OPENLINEAGE_DISABLED=true`, the switch every OpenLineage integration honours."""
    env = dict(os.environ) if env is None else env
    return env.get("OPENLINEAGE_DISABLED", "").strip().lower() == "true"


def client_configured(
    env: dict[str, str] | None = None, cwd: Path | None = None, home: Path | None = None
) -> bool:
    """Whether openlineage-python would read a setting of its own here (a transport, tags,
    filters, facets): events then go through the client, so they stay what it makes of them."""
    env = dict(os.environ) if env is None else env
    if environment_transport(env) or any(
        name.startswith(ENVIRONMENT_CONFIG_PREFIX) and value for name, value in env.items()
    ):
        return True
    cwd = Path.cwd() if cwd is None else cwd
    home = Path.home() if home is None else home
    return (cwd / CONFIG_FILE).is_file() or (home / ".openlineage" / CONFIG_FILE).is_file()
