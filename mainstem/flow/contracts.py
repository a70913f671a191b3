"""The contract verbs: compare two versions, replay one over the data, switch to one.

In: a workspace and contract versions. Out:
- `contract_diff`: every change from version A to B, classified (`validation.contract_diff`);
- `contract_check`: contract N replayed over the current master (Arrow kernels, part by part)
  and over the last K raw batches (the full validation, images included, in memory): the rows it
  would reject, by reason, with counts and examples. It writes nothing.
- `use_contract`: diff and check against the version in force, a refusal when the switch is
  breaking and would drop master rows (unless accepted), then `validate.contract_version` set in
  params.yaml and the pipeline commit, whose message records the diff, the check and what was
  accepted.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mainstem.errors import ContractError, PipelineChangedError
from mainstem.flow.pipeline import pipeline_changes
from mainstem.params import PARAMS_FILE, Params, load_params
from mainstem.validation.contract import Contract, load_contract
from mainstem.validation.contract_diff import Change, describe, diff_contracts, exit_code

DEFAULT_BATCHES = 3


def contract_file(params: Params, version: int) -> Path:
    return params.root / "contracts" / params.validate.dataset / f"v{version}.yaml"


def _ref(params: Params, version: int) -> str:
    return f"{params.validate.dataset}/v{version}"


def _raw(params: Params, version: int) -> dict[str, Any]:
    """The contract's YAML, once `load_contract` has checked it (a ContractError if not)."""
    path = contract_file(params, version)
    load_contract(path)
    loaded: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return loaded


def contract_diff(params: Params, old: int, new: int) -> list[Change]:
    """The classified changes from contract version `old` to `new` of the workspace's dataset."""
    return diff_contracts(_raw(params, old), _raw(params, new))


@dataclass
class BatchReplay:
    batch_id: str
    name: str | None
    rows_in: int
    rejected: int
    rejected_now: int | None  # under the contract in force, from the batch's report
    reasons: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, rows: int, example: str) -> None:
        self.reasons[reason] += rows
        shown = self.examples.setdefault(reason, [])
        if len(shown) < 3:
            shown.append(example)

    def to_json(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "name": self.name,
            "rows_in": self.rows_in,
            "rejected": self.rejected,
            "rejected_now": self.rejected_now,
            "reasons": {
                reason: {"rows": count, "examples": self.examples.get(reason, [])}
                for reason, count in self.reasons.most_common()
            },
        }


def replay_batch(params: Params, raw: Any, contract: Contract) -> BatchReplay:
    """Validate one raw batch against `contract` in memory; nothing is written."""
    from mainstem.validation.batch import validate_batch
    from mainstem.validation.layout import read_report

    result = validate_batch(raw, contract, params.validate.image_workers)
    report = read_report(params.validate.validated_dir, raw.batch_id)
    found = BatchReplay(
        raw.batch_id,
        raw.name,
        result.rows_in,
        result.rows_in - len(result.accepted),
        int(report["rows_rejected"]) if report else None,
    )
    for problem in result.problems:
        found.reasons[f"batch rejected: {problem}"] = result.rows_in
    for failure in result.failures:
        found.add(f"{failure.column}: {failure.check}", 1, f"{failure.source}: {failure.value}")
    for image in result.images:
        if not image.outcome.ok:
            found.add(f"{image.column}: image {image.outcome.reason}", image.rows, image.path)
    return found


@dataclass
class ContractCheck:
    contract: str
    master: dict[str, Any]
    batches: list[BatchReplay]

    def to_json(self) -> dict[str, Any]:
        return {
            "contract": self.contract,
            "master": self.master,
            "batches": [b.to_json() for b in self.batches],
        }


def contract_check(params: Params, version: int, batches: int = DEFAULT_BATCHES) -> ContractCheck:
    """Contract `version` replayed over the master and the last `batches` raw batches."""
    from mainstem.intake.ingest import list_raw_batches, open_raw_batch
    from mainstem.master.replay import replay_master

    contract = load_contract(contract_file(params, version))
    master = replay_master(params.merge.master_dir, contract).to_json()
    raw_dir = params.ingest.raw_dir
    recent = list_raw_batches(raw_dir, batches) if batches > 0 else []
    replays = []
    for record in recent:
        with open_raw_batch(raw_dir, params.root, record) as raw:
            replays.append(replay_batch(params, raw, contract))
    return ContractCheck(contract.ref, master, replays)


def describe_check(check: ContractCheck) -> list[str]:
    master = check.master
    lines = [
        f"{check.contract} over the master: {master['rejected']} of {master['rows']} rows "
        f"would be rejected ({master['parts_read']} parts read)"
    ]
    for reason, found in master["reasons"].items():
        examples = ", ".join(f"{e['key']}={e['value']}" for e in found["examples"])
        lines.append(f"  {found['rows']:>8}  {reason}  (e.g. {examples})")
    if master["not_replayed"]:
        lines.append(f"  not replayed on the master: {', '.join(master['not_replayed'])}")
    for batch in check.batches:
        name = f" ({batch.name})" if batch.name else ""
        now = (
            ""
            if batch.rejected_now is None
            else f"; {batch.rejected_now} under the contract in force"
        )
        lines.append(
            f"batch {batch.batch_id}{name}: {batch.rejected} of {batch.rows_in} rows would be "
            f"rejected{now}"
        )
        for reason, count in batch.reasons.most_common():
            shown = "; ".join(batch.examples.get(reason, []))
            lines.append(f"  {count:>8}  {reason}" + (f"  (e.g. {shown})" if shown else ""))
    return lines


def set_contract_version(params_file: Path, version: int) -> None:
    """Set `validate.contract_version` in params.yaml, keeping its comments and layout."""
    text = params_file.read_text(encoding="utf-8")
    pattern = re.compile(r"^(validate:\n(?:[ \t]+.*\n|\n)*?[ \t]+contract_version:[ \t]*)\d+", re.M)
    changed, count = pattern.subn(lambda m: f"{m.group(1)}{version}", text)
    if count != 1:
        raise ContractError(f"{params_file}: no 'validate.contract_version' line to set")
    params_file.write_text(changed, encoding="utf-8")


@dataclass(frozen=True)
class ContractSwitch:
    old: str
    new: str
    changes: list[Change]
    check: ContractCheck
    commit: str | None


def use_contract(root: Path, version: int, accept_breaking: bool = False) -> ContractSwitch:
    """Diff, check, then switch to contract `version` in a pipeline commit.

    Refused when the diff is breaking and the master would lose rows, unless `accept_breaking`.
    """
    from mainstem.flow.pipeline_commit import commit_pipeline

    params = load_params(root)
    current = params.validate.contract_version
    if version == current:
        raise ContractError(f"contract {_ref(params, version)} is already in force")
    others = [c for c in pipeline_changes(params.root) if not c.path.startswith("contracts/")]
    if others:
        raise PipelineChangedError(
            f"{', '.join(c.path for c in others)} changed since the last commit; record or "
            "discard that first, so the contract switch is a commit of its own"
        )
    changes = contract_diff(params, current, version)
    check = contract_check(params, version)
    dropped = int(check.master["rejected"])
    breaking = exit_code(changes) == 2
    if breaking and dropped and not accept_breaking:
        raise ContractError(
            f"switching to {_ref(params, version)} is breaking and would drop {dropped} of "
            f"{check.master['rows']} master rows; see `mainstem contract check {version}`, "
            "and give --accept-breaking to switch anyway"
        )
    set_contract_version(params.root / PARAMS_FILE, version)
    lines = describe(changes, _ref(params, current), _ref(params, version))
    accepted = (
        f"accepted: a breaking switch; the check foresaw {dropped} master rows dropped "
        "(--accept-breaking)"
        if breaking and dropped
        else "accepted: the check foresaw no master row dropped"
    )
    note = "\n".join([*lines, "", *describe_check(check), "", accepted])
    commit = commit_pipeline(params.root, note)
    return ContractSwitch(_ref(params, current), _ref(params, version), changes, check, commit)
