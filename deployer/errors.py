"""One error tree for deployer.

Every error a user can cause or meet derives from :class:`DeployerError` and carries a one-line
message and, where there is something to do about it, a hint. The CLI catches ``DeployerError``
once and prints ``error: <message>`` and ``hint: <hint>``; any other exception is a bug.

Retryability is in the type (after Kopf): the pipeline retries :class:`TemporaryError` and never
retries :class:`PermanentError`.
"""

from __future__ import annotations


class DeployerError(Exception):
    """Base of every error deployer reports to a user."""

    #: A stable machine code (``-o json``, the HTTP API): each class sets its own.
    code = "error"
    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None, details: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        #: Longer text shown below the message (a log tail, a smoke report); may span lines.
        self.details = details

    def __str__(self) -> str:
        return self.message


class PermanentError(DeployerError):
    """Retrying will not help: the input or the environment must change first."""

    code = "permanent"


class TemporaryError(DeployerError):
    """Retrying may help (a busy port, a slow endpoint)."""

    code = "temporary"

    def __init__(self, message: str, *, hint: str | None = None, delay: float = 1.0):
        super().__init__(message, hint=hint)
        self.delay = delay


# --- input -------------------------------------------------------------------------------------


class ManifestError(PermanentError):
    """A manifest (or any input file) is unreadable or invalid.

    ``location`` is ``file:line:column`` when known.
    """

    code = "manifest_invalid"

    def __init__(
        self,
        message: str,
        *,
        location: str | None = None,
        hint: str | None = None,
        problems: list[ManifestError] | None = None,
        field: str | None = None,
    ):
        text = f"{location}: {message}" if location else message
        super().__init__(text, hint=hint)
        self.location = location
        self.reason = message
        #: The dotted path of the field the problem is in (``spec.serving.maxModelLen``), when
        #: the problem is a field's.
        self.field = field
        #: Every problem found, when several were (the first is this error itself).
        self.problems: list[ManifestError] = problems or [self]


class InvalidNameError(PermanentError):
    """A name given on the command line cannot be a deployment's (it is checked before any
    path, query or host is built from it)."""

    code = "name_invalid"


class PlanError(PermanentError):
    """The request cannot be satisfied as written (does not fit, unsupported combination)."""

    code = "plan_refused"


class NotFoundError(PermanentError):
    """A named thing (deployment, engine, model folder) does not exist."""

    code = "not_found"


class UnsupportedError(PermanentError):
    """A valid request for something this version does not do yet."""

    code = "unsupported"


class UnsafeModelError(PermanentError):
    """A model's files break the supply-chain policy: a hostile path, pickle weights that are not
    allowed or carry code, a file that is not what its name says, or custom code not trusted.

    The message names the file and the reason; the hint says what would make it acceptable.
    """

    code = "model_unsafe"


# --- environment -------------------------------------------------------------------------------


class EngineNotInstalledError(PermanentError):
    """The serving engine is not installed where deployer looks for it."""

    code = "engine_not_installed"


class PortInUseError(PermanentError):
    """The configured port is taken by another process."""

    code = "port_in_use"


class EngineStartError(PermanentError):
    """The engine process exited or never became healthy; ``details`` holds its log tail."""

    code = "engine_start_failed"


class HealthTimeoutError(EngineStartError):
    """The engine did not answer ``/health`` within its startup budget."""

    code = "health_timeout"


class SmokeFailedError(PermanentError):
    """At least one smoke check failed; ``details`` holds the report."""

    code = "smoke_failed"


class RolloutRefusedError(PermanentError):
    """A surge rollout does not fit and an in-place restart was not allowed
    (``--allow-downtime``)."""

    code = "rollout_refused"


class RolledBackError(PermanentError):
    """A rollout's new engine failed its gate (start, smoke, SLO) and was stopped; the old
    engine keeps serving. ``details`` holds the report."""

    code = "rolled_back"


class StateError(PermanentError):
    """The state database cannot be opened or written."""

    code = "state_invalid"


class RunStartTimeout(TemporaryError):
    """A run asked of the server was not recorded in time (the state store is slow or locked)."""

    code = "run_not_started"


class ConcurrentRunError(TemporaryError):
    """Another deployer process is changing the same deployment."""

    code = "run_in_progress"


class CommandError(PermanentError):
    """A subprocess that deployer ran failed."""

    code = "command_failed"


class QualityGateError(PermanentError):
    """A quantized model failed the manifest's quality gate; it is not deployed."""

    code = "quality_gate_failed"


class BenchError(PermanentError):
    """A benchmark could not start (the deployment is not healthy) or stopped before its end (the
    engine died, the load tool failed); what finished is kept as a partial result."""

    code = "bench_failed"
