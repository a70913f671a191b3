"""What is known to stop a training: a declaration that does not fit the contract, or a training
that already failed on this master with this configuration.

In: a workspace's params, its contract, `dvc.lock` and the failure file (`retrain.failure_file`).
Out: a Blocker, or None, for the retrain policy; and the failure file, written when the training
path fails and removed when it succeeds. A failure is remembered with the master's DVC hash and a
fingerprint of the configuration (the `train:` declaration and the contract's bytes), so the
policy does not start the same failing training after every batch; it tries again once either
changes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from mainstem.durable import canonical_json, read_json, write_json
from mainstem.errors import ContractError, TrainingError
from mainstem.params import Params

if TYPE_CHECKING:
    from mainstem.validation.contract import Contract


@dataclass(frozen=True)
class Blocker:
    """Why training would fail now, and how to fix it: the policy then says no retrain."""

    basis: str  # config_error | failed
    reason: str


def declared_contract(params: Params) -> Contract:
    """The active contract, after checking that the declared label and features fit it."""
    # pandas and pandera only here: the policy and the drift pin import this module on every batch
    from mainstem.training.model import check_declared
    from mainstem.validation.contract import load_contract

    contract = load_contract(params.validate.contract_path, check_schema=False)
    check_declared(params.train, contract)
    return contract


def config_fingerprint(params: Params, contract_fingerprint: str) -> str:
    """A hash of everything declared about the training, and of the contract it is checked on."""
    train = params.train
    declared = {
        **train.declared,
        "split_version": train.split_version,
        "model_version": train.model_version,
        "seed": train.seed,
        "test_fraction": train.test_fraction,
        "eval_metric": train.eval_metric,
        "contract": contract_fingerprint,
    }
    return hashlib.sha256(canonical_json(declared)).hexdigest()


def _contract_fingerprint(params: Params) -> str:
    try:
        return hashlib.sha256(params.validate.contract_path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return "missing"


def current_master_md5(params: Params) -> str | None:
    """The master's hash in `dvc.lock`, or None before the first merge."""
    from mainstem.training.model import master_hash

    try:
        lock = yaml.safe_load((params.root / "dvc.lock").read_text(encoding="utf-8"))
        return master_hash(lock, params.merge.master_dir.relative_to(params.root).as_posix())
    except (FileNotFoundError, TrainingError):
        return None


def failure_blocker(
    memory: dict[str, Any], master_md5: str | None, fingerprint: str
) -> Blocker | None:
    """The remembered failure, when it was on this master with this configuration; no I/O."""
    if not memory or memory.get("master_md5") != master_md5:
        return None
    if memory.get("config") != fingerprint:
        return None
    return Blocker("failed", f"training failed for master {master_md5}; fix: {memory.get('error')}")


def training_blocker(params: Params) -> Blocker | None:
    """What stops a training now, if anything: the declaration first, then a remembered failure."""
    try:
        declared_contract(params)
    except TrainingError as exc:
        return Blocker("config_error", f"training cannot start: {exc}")
    except ContractError:
        pass  # validation reports a missing or malformed contract; a training fails and is kept
    memory = read_json(params.retrain_failure_file) if params.retrain_failure_file.exists() else {}
    fingerprint = config_fingerprint(params, _contract_fingerprint(params))
    return failure_blocker(memory, current_master_md5(params), fingerprint)


def failure_message(output: str) -> str:
    """The train stage's one-line error from its output; else a traceback's last line; else the
    output's last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("train: error: "):
            return line.removeprefix("train: error: ")
    for line in reversed(lines):
        if re.match(r"^[A-Za-z_.]+(Error|Exception): ", line):
            return line
    return lines[-1] if lines else "the train stage failed without a message"


def record_failure(params: Params, master_md5: str, output: str) -> None:
    """Remember that training failed on `master_md5` with the configuration as it is now."""
    write_json(
        params.retrain_failure_file,
        {
            "master_md5": master_md5,
            "config": config_fingerprint(params, _contract_fingerprint(params)),
            "error": failure_message(output),
        },
    )


def clear_failure(params: Params) -> None:
    params.retrain_failure_file.unlink(missing_ok=True)
