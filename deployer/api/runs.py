"""The state store as the facade uses it: opening it to write or to read, finding a deployment,
and recording a run (succeeded, failed or interrupted) around the work it does."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from deployer.errors import NotFoundError, StateError
from deployer.events import EventBus, EventKind
from deployer.pipeline import Pipeline
from deployer.settings import Settings, check_name
from deployer.state import DeploymentRecord, RunStatus

if TYPE_CHECKING:
    from deployer.state import StateStore


def open_store(settings: Settings) -> StateStore:
    """The state store for commands that write (created when missing)."""
    # SQLAlchemy is the heaviest import deployer has; commands that never touch state (validate,
    # plan, lock, fetch) start faster without it.
    from deployer.state import StateStore

    return StateStore(settings.database_url)


def open_reader(settings: Settings) -> StateStore | None:
    """The state store for commands that only read: None when there is none yet. Creates no
    folder, file or table, and reads a database the user may not write."""
    from deployer.state import StateStore
    from deployer.state.database import missing_sqlite_file

    store = StateStore.open_existing(settings.database_url)
    if store is not None or settings.state_url is None:
        return store
    # No database in deployer's own home means nothing deployed yet; a database named explicitly
    # (--state-url, DEPLOYER_STATE_URL) that is not there is a mistake worth saying.
    missing = missing_sqlite_file(settings.state_url)
    if missing is not None:
        raise StateError(
            f"state database {missing} does not exist",
            hint="check --state-url / DEPLOYER_STATE_URL (deployer apply creates the database)",
        )
    return store


def get(store: StateStore, name: str) -> DeploymentRecord:
    record = store.get_deployment(name)
    if record is None:
        raise unknown(name, store.list_deployments(include_destroyed=True))
    return record


@contextmanager
def reading(settings: Settings, name: str) -> Iterator[StateStore]:
    """The state store opened to read about ``name``, a known deployment (NotFoundError, with
    the known names, otherwise); closed after."""
    check_name(name)
    store = open_reader(settings)
    if store is None:
        raise unknown(name, [])
    try:
        get(store, name)
        yield store
    finally:
        store.close()


def unknown(name: str, known: Sequence[DeploymentRecord]) -> NotFoundError:
    names = ", ".join(d.name for d in known)
    return NotFoundError(
        f"no deployment named {name!r}",
        hint=f"known deployments: {names}" if names else "deployer apply MANIFEST creates one",
    )


@contextmanager
def recorded(
    store: StateStore,
    name: str,
    operation: str,
    events: EventBus,
    *,
    on_failure: Callable[[BaseException], None] | None = None,
) -> Iterator[Pipeline]:
    """A run of ``operation`` on ``name``: started, then finished as succeeded when the block
    ends, interrupted on Ctrl-C, failed on any other error (``on_failure`` sees it first, then
    it goes on). The block's steps go through the pipeline it yields."""
    run = store.start_run(name, operation)
    events.emit(EventKind.RUN_STARTED, f"{operation} {name}", run_id=run.id, operation=operation)
    pipeline = Pipeline(store, run.id, events)
    try:
        yield pipeline
    except BaseException as exc:
        interrupted = isinstance(exc, KeyboardInterrupt)
        status = RunStatus.INTERRUPTED if interrupted else RunStatus.FAILED
        store.finish_run(run.id, status, str(exc) or type(exc).__name__)
        if on_failure is not None:
            on_failure(exc)
        raise
    store.finish_run(run.id, RunStatus.SUCCEEDED)
    events.emit(EventKind.RUN_FINISHED, f"{operation} {name}: done", run_id=run.id)
