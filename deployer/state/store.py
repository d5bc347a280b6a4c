"""The state store: deployments, their runs, the runs' steps and events, in one database.

Contracts that hold for every method:

- Every write is its own short transaction, committed before the method returns. A deployer
  killed at any moment leaves a database that opens and reads; the next :meth:`StateStore.start_run`
  of that deployment marks the dead process's run INTERRUPTED, so state converges.
- Reads already show such a run as it will be recorded: a RUNNING run of a process on this host
  that is gone (no such pid, or a later process given the same pid) reads as INTERRUPTED and its
  RUNNING steps as FAILED, worked out at read time and not written. A run on another host reads
  as recorded: its process cannot be seen from here.
- A store refuses a database that is not deployer's (see :mod:`deployer.state.schema`) and leaves
  it untouched. :meth:`StateStore.open_existing` opens one for reading only: it creates nothing
  and writes nothing, and its write methods raise :class:`StateError`.
- Every string written passes through :func:`deployer.secrets.mask`: a registered secret never
  reaches the database, not even in an error text or an event's data.
- A store may be shared by threads: calls are serialised by a lock, each on its own connection.
- Times are timezone-aware UTC.
- A database that cannot be read or written raises :class:`StateError` with a hint naming it.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import psutil
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Insert,
    Row,
    Select,
    Table,
    cast,
    delete,
    exc,
    extract,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)

from deployer.errors import ConcurrentRunError, NotFoundError, StateError
from deployer.events import Event, EventKind
from deployer.secrets import mask
from deployer.state import schema, tables
from deployer.state.database import (
    Database,
    open_database,
    open_readonly_database,
    state_error,
    use_wal,
)
from deployer.state.records import (
    ADDITIVE_SAMPLE_FIELDS,
    AuditRecord,
    BenchRecord,
    DeploymentRecord,
    DeploymentStatus,
    EngineSample,
    EventData,
    EventRecord,
    RevisionRecord,
    Role,
    RunRecord,
    RunStatus,
    StepRecord,
    StepStatus,
    TokenRecord,
)

_d = tables.deployments
_r = tables.runs
_s = tables.steps
_e = tables.events
_t = tables.api_tokens
_a = tables.audit_events
_m = tables.engine_samples
_v = tables.revisions
_b = tables.bench_results
#: The measured columns of an engine sample.
SAMPLE_COLUMNS = tuple(
    c.name for c in _m.c if c.name not in ("id", "deployment", "endpoint", "ts", "error")
)

#: The first key of the PostgreSQL advisory locks on deployments' runs (the second is the
#: name's hash): "dplr", apart from any other application's locks on the same database.
_RUN_LOCKS = 0x64706C72

#: Seconds two readings of a process's start time may differ by and still be the same process
#: (psutil derives it from the boot time, which the kernel reports to the second).
_CREATE_TIME_SLACK = 1.0


class StateStore:
    """Deployments and their history in a SQLAlchemy database (SQLite by default)."""

    def __init__(self, url: str) -> None:
        """Open (and create when missing) the database at ``url``, any SQLAlchemy URL, to write.

        For SQLite the file's folder is created (0700), the file too (0600), and the tables are
        created if missing; opening the same file again, from this process or another, is safe.
        An empty database becomes deployer's; a deployer database from an older version is
        adopted and migrated in place, keeping its rows.

        Raises :class:`StateError` for a file that is not a SQLite database, a database that
        holds other tables (it is left byte for byte as it was: a SQLite file is inspected
        through a read-only connection first), an unwritable folder, or a database written by a
        newer deployer.
        """
        _refuse_foreign_file(url)
        db = open_database(url)
        self._attach(db, {})
        try:
            self._prepare_schema()
            use_wal(db)
        except BaseException:
            db.reader.dispose()
            raise

    @classmethod
    def open_existing(cls, url: str) -> StateStore | None:
        """Open the database at ``url`` for reading only, or None when there is nothing to read.

        Never creates a folder, a file, a table or a SQLite ``-wal``/``-shm`` file, and never
        writes: a SQLite file is opened ``mode=ro`` (or ``immutable=1``, a snapshot of the main
        file, when its folder or ``-shm`` is read-only), so a file or folder the user may only
        read is fine. None when the SQLite file or its folder does not exist, for an in-memory
        URL, and for a database without tables. A deployer database from an older version is
        read as it is (not migrated). The store's write methods raise :class:`StateError`.

        Raises :class:`StateError` as :class:`StateStore` does for a database that is not
        deployer's, unreadable, or from a newer deployer.
        """
        db = open_readonly_database(url)
        if db is None:
            return None
        store = cls.__new__(cls)
        store._attach(db, {})
        try:
            with store._read("open it") as conn:
                found = schema.inspect_database(conn)
            schema.check_usable(found, db.label)
        except BaseException:
            db.reader.dispose()
            raise
        if found.kind is schema.Kind.EMPTY:
            db.reader.dispose()
            return None
        store._columns = found.columns
        return store

    @property
    def readonly(self) -> bool:
        """Whether this store was opened by :meth:`open_existing` (it refuses every write)."""
        return self._db.readonly

    def close(self) -> None:
        """Release the database connections. Idempotent."""
        with self._lock:
            self._db.reader.dispose()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- deployments ---------------------------------------------------------------------------

    def get_deployment(self, name: str) -> DeploymentRecord | None:
        """The deployment called ``name``, or None when the store has never seen it."""
        with self._read(f"read deployment {name}") as conn:
            row = conn.execute(self._select(_d).where(_d.c.name == mask(name))).one_or_none()
        return None if row is None else _deployment(row)

    def list_deployments(self, include_destroyed: bool = False) -> list[DeploymentRecord]:
        """Every deployment by name; destroyed ones only with ``include_destroyed``."""
        query = self._select(_d).order_by(_d.c.name)
        if not include_destroyed:
            query = query.where(_d.c.status != DeploymentStatus.DESTROYED.value)
        with self._read("list deployments") as conn:
            rows = conn.execute(query).all()
        return [_deployment(row) for row in rows]

    def upsert_deployment(
        self,
        name: str,
        *,
        target_kind: str,
        status: DeploymentStatus,
        manifest_path: str | None = None,
        manifest_digest: str | None = None,
        spec_digest: str | None = None,
        endpoint: str | None = None,
        served_model_name: str | None = None,
        message: str | None = None,
        target_spec: dict[str, object] | None = None,
    ) -> DeploymentRecord:
        """Create the deployment or replace its fields, and return what is stored.

        Every field takes the value given (an omitted one becomes None), but for
        ``target_spec``, which an omitted one leaves as it was; ``created_at`` and
        ``last_run_id`` are kept, ``updated_at`` becomes now. Idempotent apart from
        ``updated_at``.
        """
        key = mask(name)
        now = _now()
        values: dict[str, Any] = {
            "target_kind": mask(target_kind),
            "status": DeploymentStatus(status).value,
            "manifest_path": _mask(manifest_path),
            "manifest_digest": _mask(manifest_digest),
            "spec_digest": _mask(spec_digest),
            "endpoint": _mask(endpoint),
            "served_model_name": _mask(served_model_name),
            "message": _mask(message),
            "updated_at": now,
        }
        if target_spec is not None:
            # Kept from the first apply on: a later write without one (a failed first apply's
            # record) does not forget where the deployment runs.
            values["target_spec"] = target_spec
        with self._write(f"save deployment {key}") as conn:
            _upsert_deployment(conn, key, now, values)
            row = conn.execute(select(_d).where(_d.c.name == key)).one()
        return _deployment(row)

    def set_status(self, name: str, status: DeploymentStatus, message: str | None = None) -> None:
        """Set the deployment's status and message (None clears the message).

        Raises :class:`NotFoundError` when there is no such deployment.
        """
        key = mask(name)
        values = {
            "status": DeploymentStatus(status).value,
            "message": _mask(message),
            "updated_at": _now(),
        }
        with self._write(f"update deployment {key}") as conn:
            updated = conn.execute(update(_d).where(_d.c.name == key).values(values)).rowcount
        if not updated:
            raise NotFoundError(f"no deployment named {key!r} in the state store")

    # --- runs ----------------------------------------------------------------------------------

    def start_run(self, deployment: str, operation: str) -> RunRecord:
        """Record that this process starts ``operation`` on ``deployment``; return the run.

        First the deployment's RUNNING runs are looked at, in the same transaction as the new
        run's insert, which holds a lock throughout so two racing processes cannot both start:
        on SQLite the write lock, on PostgreSQL an advisory lock on the deployment's name (other
        databases get the check without that guarantee):

        - a run of a process on this host that is gone (no such pid, or a process given the
          same pid later, told apart by the start time recorded with the run) becomes
          INTERRUPTED ("interrupted (deployer process <pid> is gone)") and its RUNNING steps
          FAILED;
        - a run of another live process, or of any process on another host (whose liveness
          cannot be checked from here), raises :class:`ConcurrentRunError` naming the pid;
        - a run of this very process is left alone.

        The new run records this process's pid, host name and start time. The deployment's
        ``last_run_id`` becomes the new run's id when the deployment exists. Not idempotent:
        each call records a new run.
        """
        key = mask(deployment)
        pid = os.getpid()
        host = self._host
        now = _now()
        with self._write(f"start a run of {key}") as conn:
            _lock_runs_of(conn, key)
            running = conn.execute(
                select(_r).where(_r.c.deployment == key, _r.c.status == RunStatus.RUNNING.value)
            ).all()
            for run in running:
                if run.host == host and run.pid == pid:
                    continue
                if not self._gone(run.host, run.pid, run.process_created):
                    raise _concurrent(run, key, host)
                _interrupt(conn, run.id, _gone_reason(run.pid), now)
            run_id = _inserted_id(
                conn,
                insert(_r).values(
                    deployment=key,
                    operation=mask(operation),
                    status=RunStatus.RUNNING.value,
                    started_at=now,
                    pid=pid,
                    host=host,
                    process_created=_own_create_time(),
                ),
            )
            conn.execute(update(_d).where(_d.c.name == key).values(last_run_id=run_id))
            row = conn.execute(select(_r).where(_r.c.id == run_id)).one()
        return self._observed(row)

    def finish_run(self, run_id: int, status: RunStatus, error: str | None = None) -> None:
        """Record how the run ended. Steps it left RUNNING become FAILED unless it SUCCEEDED.

        Finishing a finished run again overwrites its status and error. Raises
        :class:`NotFoundError` for an unknown run and ``ValueError`` for ``RUNNING``.
        """
        status = RunStatus(status)
        if not status.finished:
            raise ValueError("finish_run needs a final status, not running")
        now = _now()
        with self._write(f"finish run {run_id}") as conn:
            updated = conn.execute(
                update(_r)
                .where(_r.c.id == run_id)
                .values(status=status.value, finished_at=now, error=_mask(error))
            ).rowcount
            if updated and status is not RunStatus.SUCCEEDED:
                _fail_running_steps(conn, run_id, f"run {status.value}", now)
        if not updated:
            raise NotFoundError(f"no run {run_id} in the state store")

    def get_run(self, run_id: int) -> RunRecord | None:
        """The run, or None when there is no such run.

        A RUNNING run whose process on this host is gone reads as INTERRUPTED, with the error
        "interrupted (deployer process <pid> is gone)" and ``finished_at`` None (the store does
        not know when it died); nothing is written.
        """
        with self._read(f"read run {run_id}") as conn:
            row = conn.execute(self._select(_r).where(_r.c.id == run_id)).one_or_none()
        return None if row is None else self._observed(row)

    def list_runs(self, deployment: str, limit: int = 20) -> list[RunRecord]:
        """The deployment's ``limit`` most recent runs, newest first, seen as :meth:`get_run`
        sees them."""
        query = (
            self._select(_r)
            .where(_r.c.deployment == mask(deployment))
            .order_by(_r.c.id.desc())
            .limit(limit)
        )
        with self._read(f"list runs of {deployment}") as conn:
            rows = conn.execute(query).all()
        return [self._observed(row) for row in rows]

    # --- steps ---------------------------------------------------------------------------------

    def latest_runs(self, deployments: list[str]) -> dict[str, RunRecord]:
        """Each named deployment's most recent run (those with none are left out), in one
        query, seen as :meth:`get_run` sees them."""
        if not deployments:
            return {}
        names = [mask(name) for name in deployments]
        newest = (
            select(func.max(_r.c.id)).where(_r.c.deployment.in_(names)).group_by(_r.c.deployment)
        )
        with self._read(f"read the latest runs of {len(names)} deployment(s)") as conn:
            rows = conn.execute(self._select(_r).where(_r.c.id.in_(newest))).all()
        return {row.deployment: self._observed(row) for row in rows}

    def run_totals(self) -> dict[tuple[str, str], tuple[int, float]]:
        """Finished runs counted and their seconds summed, by operation and status."""
        with self._read("count runs") as conn:
            if conn.dialect.name == "sqlite":
                span = (func.julianday(_r.c.finished_at) - func.julianday(_r.c.started_at)) * 86400
            else:
                span = func.extract("epoch", _r.c.finished_at - _r.c.started_at)
            query = (
                select(_r.c.operation, _r.c.status, func.count(), func.sum(span))
                .where(_r.c.finished_at.is_not(None))
                .group_by(_r.c.operation, _r.c.status)
            )
            rows = conn.execute(query).all()
        return {(op, status): (int(n), float(total or 0.0)) for op, status, n, total in rows}

    def start_step(self, run_id: int, name: str, action: str) -> StepRecord:
        """Record a RUNNING step of the run. Raises :class:`NotFoundError` for an unknown run."""
        with self._write(f"start step {name} of run {run_id}") as conn:
            _require_run(conn, run_id)
            step_id = _inserted_id(
                conn,
                insert(_s).values(
                    run_id=run_id,
                    name=mask(name),
                    action=mask(action),
                    status=StepStatus.RUNNING.value,
                    started_at=_now(),
                ),
            )
            row = conn.execute(select(_s).where(_s.c.id == step_id)).one()
        return _step(row)

    def finish_step(self, step_id: int, status: StepStatus, message: str | None = None) -> None:
        """Record how the step ended. Raises :class:`NotFoundError` for an unknown step and
        ``ValueError`` for ``RUNNING``."""
        status = StepStatus(status)
        if not status.finished:
            raise ValueError("finish_step needs a final status, not running")
        with self._write(f"finish step {step_id}") as conn:
            updated = conn.execute(
                update(_s)
                .where(_s.c.id == step_id)
                .values(status=status.value, finished_at=_now(), message=_mask(message))
            ).rowcount
        if not updated:
            raise NotFoundError(f"no step {step_id} in the state store")

    def list_steps(self, run_id: int) -> list[StepRecord]:
        """The run's steps in the order they started.

        When the run reads as interrupted (see :meth:`get_run`), its RUNNING steps read as
        FAILED with the run's error as their message; nothing is written.
        """
        with self._read(f"list steps of run {run_id}") as conn:
            run = conn.execute(self._select(_r).where(_r.c.id == run_id)).one_or_none()
            rows = conn.execute(select(_s).where(_s.c.run_id == run_id).order_by(_s.c.id)).all()
        steps = [_step(row) for row in rows]
        if run is None or RunStatus(run.status) is not RunStatus.RUNNING:
            return steps
        observed = self._observed(run)
        if observed.status is RunStatus.RUNNING:
            return steps
        return [_failed(step, observed.error) for step in steps]

    # --- events --------------------------------------------------------------------------------

    def record_event(self, run_id: int, event: Event) -> None:
        """Append the event to the run's timeline. Raises :class:`NotFoundError` for an unknown
        run."""
        values = {
            "run_id": run_id,
            "ts": datetime.fromtimestamp(event.ts, UTC),
            "kind": mask(str(event.kind)),
            "step": _mask(event.step),
            "message": mask(event.message),
            "data": {mask(str(k)): _scalar(v) for k, v in event.data.items()},
            "completed": event.completed,
            "total": event.total,
        }
        with self._write(f"record an event of run {run_id}") as conn:
            _require_run(conn, run_id)
            conn.execute(insert(_e).values(values))

    def list_events(self, run_id: int) -> list[EventRecord]:
        """The run's events in the order they were recorded."""
        with self._read(f"list events of run {run_id}") as conn:
            rows = conn.execute(select(_e).where(_e.c.run_id == run_id).order_by(_e.c.id)).all()
        return [_event(row) for row in rows]

    def smoke_results(self, deployment: str, limit: int = 50) -> list[EventRecord]:
        """The deployment's latest smoke check results (from apply and smoke runs), newest
        first: the events each check recorded, its answer among their facts."""
        query = (
            select(_e)
            .join(_r, _r.c.id == _e.c.run_id)
            .where(
                _r.c.deployment == mask(deployment),
                _e.c.kind == str(EventKind.LOG),
                _e.c.step == "smoke",
                or_(_e.c.message.like("pass: %"), _e.c.message.like("FAIL: %")),
            )
            .order_by(_e.c.id.desc())
            .limit(limit)
        )
        with self._read(f"read the smoke results of {deployment}") as conn:
            return [_event(row) for row in conn.execute(query).all()]

    # --- server tokens and audit ---------------------------------------------------------------

    def add_token(self, name: str, role: Role, token_sha256: str, prefix: str) -> TokenRecord:
        """Keep a new token's hash (never the token) under ``name``."""
        values = {
            "name": mask(name),
            "role": role.value,
            "token_sha256": token_sha256,
            "prefix": prefix,
            "created_at": _now(),
        }
        with self._write(f"add token {name}") as conn:
            token_id = _inserted_id(conn, insert(_t).values(values))
            row = conn.execute(select(_t).where(_t.c.id == token_id)).one()
        return _token(row)

    def find_token(self, token_sha256: str) -> TokenRecord | None:
        """The token with this hash, revoked or not; None when there is none."""
        with self._read("look up a token") as conn:
            row = conn.execute(select(_t).where(_t.c.token_sha256 == token_sha256)).first()
        return _token(row) if row else None

    def get_token(self, token_id: int) -> TokenRecord | None:
        with self._read(f"read token {token_id}") as conn:
            row = conn.execute(select(_t).where(_t.c.id == token_id)).first()
        return _token(row) if row else None

    def list_tokens(self) -> list[TokenRecord]:
        with self._read("list tokens") as conn:
            rows = conn.execute(select(_t).order_by(_t.c.id)).all()
        return [_token(row) for row in rows]

    def touch_token(self, token_id: int) -> None:
        """Note that the token was just used."""
        with self._write(f"note the use of token {token_id}") as conn:
            conn.execute(update(_t).where(_t.c.id == token_id).values(last_used_at=_now()))

    def revoke_token(self, token_id: int) -> TokenRecord:
        """Revoke a token (idempotent); raises :class:`NotFoundError` for an unknown id."""
        with self._write(f"revoke token {token_id}") as conn:
            row = conn.execute(select(_t).where(_t.c.id == token_id)).first()
            if row is None:
                raise NotFoundError(
                    f"no token {token_id}", hint="deployer server token list shows them"
                )
            if row.revoked_at is None:
                conn.execute(update(_t).where(_t.c.id == token_id).values(revoked_at=_now()))
                row = conn.execute(select(_t).where(_t.c.id == token_id)).one()
        return _token(row)

    def audit(
        self,
        actor: str,
        action: str,
        target: str | None,
        result: str,
        detail: str | None = None,
    ) -> None:
        """Append an audit event."""
        values = {
            "ts": _now(),
            "actor": mask(actor),
            "action": action,
            "target": _mask(target),
            "result": result,
            "detail": _mask(detail),
        }
        with self._write(f"audit {action}") as conn:
            conn.execute(insert(_a).values(values))

    def list_audit(self, limit: int = 100, before_id: int | None = None) -> list[AuditRecord]:
        """The latest audit events, newest first (older than ``before_id`` when given)."""
        query = select(_a).order_by(_a.c.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(_a.c.id < before_id)
        with self._read("list audit events") as conn:
            rows = conn.execute(query).all()
        return [
            AuditRecord(
                id=row.id,
                ts=row.ts,
                actor=row.actor,
                action=row.action,
                target=row.target,
                result=row.result,
                detail=row.detail,
            )
            for row in rows
        ]

    # --- revisions -----------------------------------------------------------------------------

    def add_revision(
        self,
        deployment: str,
        *,
        run_id: int | None,
        manifest_path: str,
        manifest_digest: str,
        manifest_text: str,
        lock_text: str | None,
    ) -> RevisionRecord:
        """Keep what an apply applied as the deployment's next revision; the latest one when it
        is the same manifest and lock (nothing new was applied)."""
        key = mask(deployment)
        with self._write(f"record a revision of {deployment}") as conn:
            latest = conn.execute(
                select(_v).where(_v.c.deployment == key).order_by(_v.c.number.desc()).limit(1)
            ).first()
            if (
                latest is not None
                and latest.manifest_digest == manifest_digest
                and latest.lock_text == lock_text
            ):
                return _revision(latest)
            values = {
                "deployment": key,
                "number": (latest.number if latest else 0) + 1,
                "applied_at": _now(),
                "run_id": run_id,
                "manifest_path": mask(manifest_path),
                "manifest_digest": manifest_digest,
                "manifest_text": mask(manifest_text),
                "lock_text": _mask(lock_text),
            }
            conn.execute(insert(_v).values(values))
            row = conn.execute(
                select(_v).where(_v.c.deployment == key, _v.c.number == values["number"])
            ).one()
        return _revision(row)

    def list_revisions(self, deployment: str) -> list[RevisionRecord]:
        """The deployment's revisions, newest first."""
        query = select(_v).where(_v.c.deployment == mask(deployment)).order_by(_v.c.number.desc())
        with self._read(f"list revisions of {deployment}") as conn:
            rows = conn.execute(query).all()
        return [_revision(row) for row in rows]

    def get_revision(self, deployment: str, number: int) -> RevisionRecord | None:
        query = select(_v).where(_v.c.deployment == mask(deployment), _v.c.number == number)
        with self._read(f"read revision {number} of {deployment}") as conn:
            row = conn.execute(query).first()
        return _revision(row) if row else None

    # --- benchmark results ---------------------------------------------------------------------

    def add_bench_result(
        self,
        deployment: str,
        *,
        run_id: int | None,
        manifest_digest: str,
        model_revision: str | None,
        status: str,
        tool: str,
        started_at: datetime,
        finished_at: datetime,
        result: dict[str, object],
    ) -> BenchRecord:
        """Keep one benchmark's result (masked) and return it with its id."""
        values = {
            "deployment": mask(deployment),
            "run_id": run_id,
            "manifest_digest": manifest_digest,
            "model_revision": _mask(model_revision),
            "status": status,
            "tool": tool,
            "started_at": started_at,
            "finished_at": finished_at,
            "result": json.loads(mask(json.dumps(result))),
        }
        with self._write(f"record a benchmark of {deployment}") as conn:
            new_id = _inserted_id(conn, insert(_b).values(values))
            row = conn.execute(select(_b).where(_b.c.id == new_id)).one()
        return _bench(row)

    def list_bench_results(
        self, deployment: str, *, manifest_digest: str | None = None, limit: int = 100
    ) -> list[BenchRecord]:
        """The deployment's benchmark results, newest first; only those of ``manifest_digest``
        when given (a benchmark of another revision is never mixed in)."""
        query = select(_b).where(_b.c.deployment == mask(deployment))
        if manifest_digest is not None:
            query = query.where(_b.c.manifest_digest == manifest_digest)
        query = query.order_by(_b.c.id.desc()).limit(limit)
        with self._read(f"list benchmarks of {deployment}") as conn:
            rows = conn.execute(query).all()
        return [_bench(row) for row in rows]

    def get_bench_result(self, result_id: int) -> BenchRecord | None:
        with self._read(f"read benchmark {result_id}") as conn:
            row = conn.execute(select(_b).where(_b.c.id == result_id)).first()
        return _bench(row) if row else None

    # --- engine samples ------------------------------------------------------------------------

    def add_samples(self, samples: list[EngineSample]) -> None:
        """Append one scrape's samples (one per endpoint) in one transaction."""
        if not samples:
            return
        rows = [
            {
                "deployment": mask(x.deployment),
                "endpoint": mask(x.endpoint),
                "ts": x.ts,
                "error": _mask(x.error),
                **{name: x.values.get(name) for name in SAMPLE_COLUMNS},
            }
            for x in samples
        ]
        with self._write(f"record {len(rows)} engine sample(s)") as conn:
            conn.execute(insert(_m), rows)

    def samples(self, deployment: str, since: datetime, limit: int = 100_000) -> list[EngineSample]:
        """The deployment's samples since ``since``, oldest first (at most ``limit``)."""
        query = (
            select(_m)
            .where(_m.c.deployment == mask(deployment), _m.c.ts >= since)
            .order_by(_m.c.ts, _m.c.id)
            .limit(limit)
        )
        with self._read(f"read the engine samples of {deployment}") as conn:
            rows = conn.execute(query).all()
        return [_sample(row) for row in rows]

    def sample_buckets(
        self, deployment: str, since: datetime, step: int
    ) -> list[tuple[int, dict[str, float | None]]]:
        """The deployment's samples since ``since`` as plot points, worked out in one query:
        ``(bucket start, {field: mean or None})`` oldest first, a bucket for every ``step``
        seconds (starting at whole multiples of ``step`` unix seconds) that has a scrape.

        The samples of one scrape (one ``ts``) are first combined across the deployment's
        endpoints, :data:`ADDITIVE_SAMPLE_FIELDS` summed and the others the largest (None
        values left out, failed scrapes too), then each field is averaged over its bucket's
        scrapes; a field no scrape of the bucket measured is None.
        """
        if step < 1:
            raise ValueError(f"bucket step {step} s: must be at least 1")
        with self._read(f"read the engine samples of {deployment}") as conn:
            start = _unix_seconds(conn, _m.c.ts) // literal(step, BigInteger) * step
            scrapes = (
                select(
                    start.label("start"),
                    *[
                        (func.sum if name in ADDITIVE_SAMPLE_FIELDS else func.max)(
                            _m.c[name]
                        ).label(name)
                        for name in SAMPLE_COLUMNS
                    ],
                )
                .where(
                    _m.c.deployment == mask(deployment),
                    _m.c.ts >= since,
                    or_(_m.c.error.is_(None), _m.c.error == ""),
                )
                .group_by(_m.c.ts)
                .subquery()
            )
            query = (
                select(
                    scrapes.c.start,
                    *[func.avg(scrapes.c[name]).label(name) for name in SAMPLE_COLUMNS],
                )
                .group_by(scrapes.c.start)
                .order_by(scrapes.c.start)
            )
            rows = conn.execute(query).all()
        return [
            (int(row.start), {name: getattr(row, name) for name in SAMPLE_COLUMNS}) for row in rows
        ]

    def sample_errors(
        self, deployment: str, since: datetime, limit: int = 20
    ) -> list[EngineSample]:
        """The deployment's last ``limit`` failed scrapes since ``since``, oldest first."""
        query = (
            select(_m)
            .where(
                _m.c.deployment == mask(deployment),
                _m.c.ts >= since,
                _m.c.error.is_not(None),
                _m.c.error != "",
            )
            .order_by(_m.c.ts.desc(), _m.c.id.desc())
            .limit(limit)
        )
        with self._read(f"read the failed scrapes of {deployment}") as conn:
            rows = conn.execute(query).all()
        return [_sample(row) for row in reversed(rows)]

    def prune_samples(self, before: datetime) -> int:
        """Delete samples older than ``before`` (retention); how many went."""
        with self._write("prune engine samples") as conn:
            return int(conn.execute(delete(_m).where(_m.c.ts < before)).rowcount or 0)

    # --- plumbing ------------------------------------------------------------------------------

    def _attach(self, db: Database, columns: dict[str, frozenset[str]]) -> None:
        self._db = db
        self._lock = threading.RLock()
        self._host = mask(socket.gethostname())
        #: For a read-only store: the columns each table has (an older schema lacks some).
        self._columns = columns

    def _prepare_schema(self) -> None:
        with self._write("open it") as conn:
            found = schema.inspect_database(conn)
            schema.check_usable(found, self._db.label)
            schema.prepare(conn, found)

    def _select(self, table: Table) -> Select[Any]:
        """``SELECT`` the table's columns the database has (all of them unless read-only)."""
        present = self._columns.get(table.name)
        if present is None:
            return select(table)
        return select(*[c for c in table.c if c.name in present])

    def _observed(self, row: Row[Any]) -> RunRecord:
        """The run as it stands: RUNNING with its process gone reads as INTERRUPTED."""
        run = _run(row)
        if run.status is not RunStatus.RUNNING:
            return run
        if (run.host, run.pid) == (self._host, os.getpid()):
            return run
        if not self._gone(run.host, run.pid, run.process_created):
            return run
        return dataclasses.replace(run, status=RunStatus.INTERRUPTED, error=_gone_reason(run.pid))

    def _gone(self, host: str, pid: int, created: float | None) -> bool:
        """Whether the process that ran a run is known to be gone (only knowable on this host)."""
        return host == self._host and not _same_process_alive(pid, created)

    @contextmanager
    def _write(self, doing: str) -> Iterator[Connection]:
        """One committed transaction; on SQLite it holds the write lock from its first read."""
        if self._db.readonly:
            raise StateError(
                f"state database {self._db.label} was opened read-only: cannot {mask(doing)}",
                hint="this is a deployer bug: commands that change state open it with "
                "StateStore(url)",
            )
        with self._lock, self._guard(doing), self._db.writer.begin() as conn:
            yield conn

    @contextmanager
    def _read(self, doing: str) -> Iterator[Connection]:
        with self._lock, self._guard(doing), self._db.reader.connect() as conn:
            yield conn

    @contextmanager
    def _guard(self, doing: str) -> Iterator[None]:
        try:
            yield
        except exc.SQLAlchemyError as error:
            raise state_error(self._db, mask(doing), error) from error


def _refuse_foreign_file(url: str) -> None:
    """Raise :class:`StateError` if ``url`` is an existing SQLite file that is not deployer's.

    Looks through a read-only connection, before anything opens the file to write: a foreign
    file stays byte for byte as it was, with no ``-wal``/``-shm`` beside it. A missing file, a
    deployer one and an empty one pass; other databases are checked by the writer's own
    transaction instead.
    """
    db = open_readonly_database(url)
    if db is None:
        return
    try:
        if db.path is None:
            return
        try:
            with db.reader.connect() as conn:
                found = schema.inspect_database(conn)
        except exc.SQLAlchemyError as error:
            raise state_error(db, "open it", error) from error
        schema.check_usable(found, db.label)
    finally:
        db.reader.dispose()


def _now() -> datetime:
    return datetime.now(UTC)


def _sample(row: Row[Any]) -> EngineSample:
    return EngineSample(
        deployment=row.deployment,
        endpoint=row.endpoint,
        ts=row.ts,
        values={name: getattr(row, name) for name in SAMPLE_COLUMNS},
        error=row.error,
    )


def _unix_seconds(conn: Connection, ts: ColumnElement[datetime]) -> ColumnElement[int]:
    """A stored time's whole unix seconds (the fraction cut off), on the connection's backend."""
    if conn.dialect.name == "sqlite":
        # Stored as naive UTC text, "YYYY-MM-DD HH:MM:SS.ffffff". strftime('%s') of all of it
        # would first round to the millisecond (":59.9996" becomes the next minute), so the
        # fraction goes before.
        return cast(func.strftime("%s", func.substr(ts, 1, 19)), BigInteger)
    return cast(func.floor(extract("epoch", ts)), BigInteger)


def _mask(text: str | None) -> str | None:
    return None if text is None else mask(text)


def _scalar(value: object) -> str | int | float | bool | None:
    if value is None or isinstance(value, bool | int | float):
        return value
    return mask(str(value))


def _same_process_alive(pid: int, created: float | None) -> bool:
    """Whether ``pid`` is a running process on this host (a zombie counts as gone) and, when
    ``created`` is known, the one that started then rather than a later one given the same pid."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return created is None or abs(process.create_time() - created) <= _CREATE_TIME_SLACK
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # exists but we may not look at it
        return psutil.pid_exists(pid)


def _own_create_time() -> float | None:
    try:
        return psutil.Process().create_time()
    except psutil.Error:
        return None


def _gone_reason(pid: int) -> str:
    return f"interrupted (deployer process {pid} is gone)"


def _failed(step: StepRecord, reason: str | None) -> StepRecord:
    if step.status is not StepStatus.RUNNING:
        return step
    return dataclasses.replace(step, status=StepStatus.FAILED, message=reason)


def _concurrent(run: Row[Any], deployment: str, host: str) -> ConcurrentRunError:
    where = "" if run.host == host else f" on host {run.host}"
    started = run.started_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    hint = f"wait for run {run.id} to finish, or stop deployer process {run.pid}{where}"
    if run.host != host:
        hint += (
            "; deployer cannot see processes on other hosts, so if that one is gone "
            f"run {run.id} has to be marked interrupted in the state database"
        )
    return ConcurrentRunError(
        f"deployment {deployment!r} is being changed by deployer process {run.pid}{where} "
        f"(run {run.id}, {run.operation}, started {started})",
        hint=hint,
    )


def _upsert_deployment(conn: Connection, key: str, now: datetime, values: dict[str, Any]) -> None:
    """Insert the deployment or update it, as one statement where the database has one (SQLite
    and PostgreSQL: ``INSERT ... ON CONFLICT DO UPDATE``), so that two first writes at once make
    one record; elsewhere an update, then an insert when nothing was updated."""
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        # The database's own dialect module: already loaded by its connection.
        module = importlib.import_module(f"sqlalchemy.dialects.{dialect}")
        statement = module.insert(_d).values(name=key, created_at=now, **values)
        conn.execute(statement.on_conflict_do_update(index_elements=[_d.c.name], set_=values))
        return
    if not conn.execute(update(_d).where(_d.c.name == key).values(values)).rowcount:
        conn.execute(insert(_d).values(name=key, created_at=now, **values))


def _lock_runs_of(conn: Connection, deployment: str) -> None:
    """On PostgreSQL, wait for and hold until the transaction ends an advisory lock on
    ``deployment``'s name, so that one process at a time checks and starts its runs. (Read
    committed, each statement sees what was committed before it began: the check after the lock
    sees the run of the process that held it.) SQLite's ``BEGIN IMMEDIATE`` does this already."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(_RUN_LOCKS, func.hashtext(deployment))))


def _interrupt(conn: Connection, run_id: int, reason: str, now: datetime) -> None:
    conn.execute(
        update(_r)
        .where(_r.c.id == run_id)
        .values(status=RunStatus.INTERRUPTED.value, finished_at=now, error=mask(reason))
    )
    _fail_running_steps(conn, run_id, reason, now)


def _fail_running_steps(conn: Connection, run_id: int, reason: str, now: datetime) -> None:
    conn.execute(
        update(_s)
        .where(_s.c.run_id == run_id, _s.c.status == StepStatus.RUNNING.value)
        .values(status=StepStatus.FAILED.value, finished_at=now, message=mask(reason))
    )


def _inserted_id(conn: Connection, statement: Insert) -> int:
    key = conn.execute(statement).inserted_primary_key
    if key is None:  # typed optional; a single-row insert always reports its key
        raise StateError("the state database did not report the id of a new row")
    return int(key[0])


def _require_run(conn: Connection, run_id: int) -> None:
    if conn.execute(select(_r.c.id).where(_r.c.id == run_id)).first() is None:
        raise NotFoundError(f"no run {run_id} in the state store")


def _deployment(row: Row[Any]) -> DeploymentRecord:
    return DeploymentRecord(
        name=row.name,
        target_kind=row.target_kind,
        status=DeploymentStatus(row.status),
        manifest_path=row.manifest_path,
        manifest_digest=row.manifest_digest,
        spec_digest=row.spec_digest,
        endpoint=row.endpoint,
        served_model_name=row.served_model_name,
        message=row.message,
        created_at=row.created_at,
        updated_at=row.updated_at,
        last_run_id=row.last_run_id,
        target_spec=row._mapping.get("target_spec"),
    )


def _run(row: Row[Any]) -> RunRecord:
    return RunRecord(
        id=row.id,
        deployment=row.deployment,
        operation=row.operation,
        status=RunStatus(row.status),
        started_at=row.started_at,
        finished_at=row.finished_at,
        error=row.error,
        pid=row.pid,
        host=row.host,
        process_created=row._mapping.get("process_created"),
    )


def _step(row: Row[Any]) -> StepRecord:
    return StepRecord(
        id=row.id,
        run_id=row.run_id,
        name=row.name,
        action=row.action,
        status=StepStatus(row.status),
        started_at=row.started_at,
        finished_at=row.finished_at,
        message=row.message,
    )


def _event(row: Row[Any]) -> EventRecord:
    raw = row.data if isinstance(row.data, dict) else {}
    data: EventData = {str(k): _scalar(v) for k, v in raw.items()}
    return EventRecord(
        id=row.id,
        run_id=row.run_id,
        ts=row.ts,
        kind=row.kind,
        step=row.step,
        message=row.message,
        data=data,
        completed=row.completed,
        total=row.total,
    )


def _token(row: Row[Any]) -> TokenRecord:
    return TokenRecord(
        id=row.id,
        name=row.name,
        role=Role(row.role),
        prefix=row.prefix,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


def _bench(row: Row[Any]) -> BenchRecord:
    return BenchRecord(
        id=row.id,
        deployment=row.deployment,
        run_id=row.run_id,
        manifest_digest=row.manifest_digest,
        model_revision=row.model_revision,
        status=row.status,
        tool=row.tool,
        started_at=row.started_at,
        finished_at=row.finished_at,
        result=dict(row.result),
    )


def _revision(row: Row[Any]) -> RevisionRecord:
    return RevisionRecord(
        deployment=row.deployment,
        number=row.number,
        applied_at=row.applied_at,
        run_id=row.run_id,
        manifest_path=row.manifest_path,
        manifest_digest=row.manifest_digest,
        manifest_text=row.manifest_text,
        lock_text=row.lock_text,
    )
