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


class MasterError(MainstemError):
    """The master cannot take these keys or is not in a state mainstem wrote."""


class ServiceError(MainstemError):
    """A local service could not be created, started or reached; the message says which."""


class CommandError(MainstemError):
    """An external command failed; the message names it and ends with its output."""


class TrainingError(MainstemError):
    """The request, the master or the params do not allow a training run."""


class BatchRejectedError(MainstemError):
    """The batch was refused (at the drop folder or by the contract) and quarantined."""


class MissingDecisionError(MainstemError):
    """A training run started without the retrain decision it must carry; a retry cannot help."""


class RegistryError(MainstemError):
    """The MLflow store is unreachable, or holds something mainstem cannot use as it is."""


class PolicyError(MainstemError):
    """An input of the policy is unusable; the message names it and what it holds."""


class BatchFailedError(MainstemError):
    """A step of the batch path failed; the batch stays claimed and the next run resumes it."""


class PipelineChangedError(MainstemError):
    """The workspace's pipeline differs from its last commit; the message says how to record it."""


class TrainingConfigError(TrainingError):
    """The declared training (train.label, train.features) does not fit the active contract."""


class RawBatchMissingError(MainstemError):
    """A past raw batch is needed and neither the workspace nor the DVC cache holds its pack."""


class ValidatedBatchMissingError(MainstemError):
    """A past batch's validated results are needed and the DVC cache does not hold them."""


class RawBatchDroppedError(RawBatchMissingError):
    """A past raw batch is needed and its pack was dropped by retention (`mainstem gc`)."""


class RetentionError(MainstemError):
    """`mainstem gc` cannot run as asked: a bad age, or a DVC remote it cannot reach."""


class RemoteUnreachableError(MainstemError):
    """A worker cannot reach the lineage git remote or the DVC remote; the message names which."""


class HistoryDivergedError(MainstemError):
    """The lineage remote moved on without this batch's commit; nothing was pushed over it."""


class DvcObjectMissingError(MainstemError):
    """An object a lineage commit names is neither in the DVC cache nor on the DVC remote."""


class DropZoneError(MainstemError):
    """The S3 drop zone (`ingest.incoming_dir: s3://...`) refused or failed a request."""


class DropZoneUnreachableError(DropZoneError):
    """The S3 endpoint of the drop zone does not answer."""


class DropZoneBucketMissingError(DropZoneError):
    """The drop zone's bucket does not exist."""


class DropZoneAccessDeniedError(DropZoneError):
    """The credentials are missing or may not read or write the drop zone."""


class IndexLayoutError(MainstemError):
    """An index of the one-file-per-batch layout: `mainstem upgrade` folds it into segments."""
