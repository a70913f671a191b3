"""The exceptions mainstem raises for conditions a user can act on.

Each carries a message that says what went wrong and what to do about it; the CLI and the stage
entry points print that message instead of a traceback.
"""


class MainstemError(Exception):
    """A failure with a message meant for the operator."""


class ParamsError(MainstemError):
    """params.yaml is missing a key or holds a value of the wrong kind."""


class ContractError(MainstemError):
    """A contract file is missing or malformed."""


class LockError(MainstemError):
    """The drop-folder lock is not in the state an operation needs."""


class BatchChangedError(MainstemError):
    """A claimed batch's files no longer match what the claim recorded."""


class StorageError(MainstemError):
    """Disk full, I/O error or permission denied while writing pipeline state."""
