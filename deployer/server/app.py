"""The FastAPI application: ``/api/v1`` over the facade (:mod:`deployer.api`), ``/metrics`` for
Prometheus, ``/healthz``.

Every response body is what the CLI's ``-o json`` prints for the same question (the facade's
result models), inside a page envelope for lists. Every request carries a token
(``Authorization: Bearer dps_...``): none or an unknown one is 401, a role too small is 403.
Every action (each POST) is an audit event with who, what, on what, and how it ended.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from deployer import __version__, api
from deployer.errors import (
    ConcurrentRunError,
    DeployerError,
    InvalidNameError,
    ManifestError,
    NotFoundError,
    PlanError,
    TemporaryError,
)
from deployer.events import EventBus
from deployer.metrics.fleet import exposition
from deployer.server import auth, runs
from deployer.server.intents import LatestPlans
from deployer.server.pages import add_pages
from deployer.server.params import LogLines, RevisionNumber, RevisionQuery, RunId
from deployer.server.problems import located
from deployer.server.scraper import Scraper
from deployer.server.series import stored_series
from deployer.server.sessions import COOKIE, Sessions
from deployer.settings import Settings
from deployer.state import Role, RunStatus, StateStore

#: Most items one page of a list holds.
MAX_PAGE = 200
#: The longest window of engine samples one request may ask for (seconds), and most points.
MAX_WINDOW = 31 * 24 * 3600
MAX_POINTS = 2000
#: Seconds between two looks at a followed run's new events.
FOLLOW_POLL = 0.5

_bearer = HTTPBearer(auto_error=False, description="a token from `deployer server token create`")


def _principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> auth.Principal:
    store: StateStore = request.app.state.store
    found = auth.authenticate(store, credentials.credentials) if credentials else None
    if found is None and credentials is None and request.method in ("GET", "HEAD"):
        # The dashboard's own reads (its plots): the session cookie, SameSite=Strict. A request
        # that changes something needs a token, or a page form with its CSRF token.
        sessions: Sessions = request.app.state.sessions
        found = sessions.check(store, request.cookies.get(COOKIE))
    if found is None:
        raise HTTPException(
            401,
            detail={"code": "unauthorized", "message": "a valid token is required"},
            headers={"WWW-Authenticate": "Bearer"},
        )
    return found


def _role(needed: Role) -> Callable[[Request, auth.Principal], auth.Principal]:
    def check(
        request: Request, who: Annotated[auth.Principal, Depends(_principal)]
    ) -> auth.Principal:
        if not who.role.allows(needed):
            store: StateStore = request.app.state.store
            store.audit(who.name, "denied", request.url.path, "refused", f"role {who.role}")
            raise HTTPException(
                403,
                detail={
                    "code": "forbidden",
                    "message": f"this needs the {needed} role; token {who.name!r} is {who.role}",
                },
            )
        return who

    return check


Viewer = Annotated[auth.Principal, Depends(_role(Role.VIEWER))]
Operator = Annotated[auth.Principal, Depends(_role(Role.OPERATOR))]


def create_app(
    settings: Settings,
    *,
    scrape_interval: float | None = None,
    retention: timedelta = timedelta(days=7),
) -> FastAPI:
    """The server's application on ``settings``' state store (created when missing); with a
    ``scrape_interval`` (seconds), it scrapes every running engine's metrics into the store."""
    store = StateStore(settings.database_url)
    background = runs.Runs()
    scraper = Scraper(settings, store, scrape_interval or 15.0, retention)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if scrape_interval:
            scraper.start()
        yield
        scraper.stop()
        store.close()

    app = FastAPI(
        lifespan=lifespan,
        title="deployer",
        version=__version__,
        summary="Deploy open models from manifests and prove they answer: the HTTP API.",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.store = store
    app.state.sessions = Sessions(settings)
    plans = LatestPlans(settings)
    add_pages(app, store, background, app.state.sessions, settings, plans)

    @app.exception_handler(DeployerError)
    async def _deployer_error(_request: Request, exc: DeployerError) -> JSONResponse:
        return JSONResponse(error_body(exc), status_code=status_for(exc))

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
    def metrics() -> PlainTextResponse:
        text, content_type = exposition(store, scrape_failures=scraper.failures)
        return PlainTextResponse(text, media_type=content_type)

    @app.get("/api/v1/deployments", summary="List deployments, a page at a time")
    def list_deployments(
        who: Viewer,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
        include_destroyed: bool = False,
    ) -> dict[str, Any]:
        page = api.status_page(
            settings, limit=limit, offset=offset, include_destroyed=include_destroyed
        )
        return {
            "items": [view.to_json() for view in page.views],
            "total": page.total,
            "limit": limit,
            "offset": offset,
        }

    @app.get("/api/v1/deployments/{name}", summary="One deployment with its recent runs")
    def get_deployment(name: str, who: Viewer) -> dict[str, Any]:
        [view] = api.status(settings, name)
        return {**view.to_json(), "runs": _runs(api.history(settings, name, limit=10))}

    @app.get("/api/v1/deployments/{name}/runs", summary="A deployment's runs with their steps")
    def list_runs(
        name: str, who: Viewer, limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20
    ) -> dict[str, Any]:
        return {"items": _runs(api.history(settings, name, limit=limit))}

    @app.get(
        "/api/v1/deployments/{name}/metrics",
        summary="The deployment's engine load over a window, for plots",
    )
    def engine_series(
        name: str,
        who: Viewer,
        seconds: Annotated[int, Query(ge=60, le=MAX_WINDOW)] = 3600,
        points: Annotated[int, Query(ge=10, le=MAX_POINTS)] = 300,
    ) -> dict[str, Any]:
        api.status(settings, name)  # 404 for an unknown name
        since = datetime.now(UTC) - timedelta(seconds=seconds)
        return stored_series(store, name, since, seconds=seconds, points=points)

    @app.get(
        "/api/v1/deployments/{name}/smoke",
        summary="The deployment's latest smoke check results, each with its answer",
    )
    def smoke_history(
        name: str, who: Viewer, limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50
    ) -> dict[str, Any]:
        return {"items": [e.to_json() for e in api.smoke_history(settings, name, limit)]}

    @app.get(
        "/api/v1/deployments/{name}/intent",
        summary="The applied revision, its lock and planned KV capacity beside what its engines "
        "report",
    )
    def get_intent(name: str, who: Viewer) -> dict[str, Any]:
        return plans.intent(name).to_json()

    @app.get(
        "/api/v1/deployments/{name}/logs",
        summary="The engine's log: the last `lines` lines, or without `lines` the whole log as a "
        "download",
        response_class=StreamingResponse,
    )
    def get_logs(
        name: str,
        who: Viewer,
        lines: LogLines | None = None,
    ) -> StreamingResponse:
        chunks = log_text(api.logs(name, settings, api.WHOLE_LOG if lines is None else lines))
        headers = {}
        if lines is None:
            headers["Content-Disposition"] = f'attachment; filename="{name}-engine.log"'
        return StreamingResponse(chunks, media_type="text/plain; charset=utf-8", headers=headers)

    @app.get("/api/v1/runs/{run_id}", summary="One run with its steps and events")
    def get_run(run_id: RunId, who: Viewer) -> dict[str, Any]:
        run = store.get_run(run_id)
        if run is None:
            raise NotFoundError(f"no run {run_id}")
        return {
            **_json(run),
            "steps": [_json(s) for s in store.list_steps(run_id)],
            "events": [_json(e) for e in store.list_events(run_id)],
        }

    @app.get(
        "/api/v1/runs/{run_id}/events",
        summary="A run's events as Server-Sent Events, until the run ends",
        response_class=StreamingResponse,
    )
    async def follow_run(run_id: RunId, who: Viewer) -> StreamingResponse:
        if store.get_run(run_id) is None:
            raise NotFoundError(f"no run {run_id}")
        return StreamingResponse(_follow(store, run_id), media_type="text/event-stream")

    @app.post("/api/v1/plan", summary="Plan manifests posted as YAML; nothing is changed")
    def plan(
        who: Viewer,
        manifest: Annotated[str, Body(media_type="application/yaml")],
    ) -> dict[str, Any]:
        with refusing_posted(who, "plan"):
            plans = api.plan_loaded(api.posted_manifest(settings, manifest), settings)
        store.audit(who.name, "plan", plans.deployment, "ok")
        return plans.model_dump(mode="json")

    @app.post(
        "/api/v1/deployments/{name}/smoke",
        status_code=202,
        summary="Run the deployment's smoke checks again, as a background run",
    )
    def smoke(name: str, who: Operator) -> dict[str, Any]:
        return _start(who, "smoke", name, lambda events: api.smoke(name, settings, events))

    @app.get(
        "/api/v1/deployments/{name}/revisions",
        summary="Every applied revision (manifest and lock, as applied), newest first",
    )
    def list_revisions(name: str, who: Viewer) -> dict[str, Any]:
        return {"items": [_json(r) for r in api.revisions(settings, name)]}

    @app.get(
        "/api/v1/deployments/{name}/revisions/{older}/diff/{newer}",
        summary="A unified diff of two revisions' manifest and lock",
    )
    def diff_revisions(
        name: str, older: RevisionNumber, newer: RevisionNumber, who: Viewer
    ) -> dict[str, Any]:
        return api.revision_diff(settings, name, older, newer).to_json()

    @app.post(
        "/api/v1/deployments/{name}/rollback",
        status_code=202,
        summary="Re-apply a previous revision, as a background run",
    )
    def rollback(name: str, who: Operator, revision: RevisionQuery) -> dict[str, Any]:
        # An unknown revision fails before its run is recorded: the request's own 404.
        return _start(
            who, "rollback", name, lambda events: api.rollback(name, revision, settings, events)
        )

    @app.post(
        "/api/v1/apply",
        status_code=202,
        summary="Apply a manifest posted as YAML, as a background run",
    )
    def apply(
        who: Operator, manifest: Annotated[str, Body(media_type="application/yaml")]
    ) -> dict[str, Any]:
        with refusing_posted(who, "apply"):
            loaded = api.posted_manifest(settings, manifest)
        name = loaded.deployment.name
        return _start(who, "apply", name, lambda events: api.apply_loaded(loaded, settings, events))

    @app.post(
        "/api/v1/deployments/{name}/destroy",
        status_code=202,
        summary="Stop the deployment (its history stays), as a background run",
    )
    def destroy(name: str, who: Operator) -> dict[str, Any]:
        return _start(who, "destroy", name, lambda events: api.destroy(name, settings, events))

    @contextmanager
    def refusing_posted(who: auth.Principal, action: str) -> Iterator[None]:
        """A posted manifest's problems: audited, and answered 422 located in its text."""
        try:
            yield
        except ManifestError as exc:
            store.audit(who.name, action, None, "refused", exc.reason)
            raise _posted(exc) from None

    def _start(
        who: auth.Principal, action: str, name: str, work: Callable[[EventBus], object]
    ) -> dict[str, Any]:
        try:
            run_id = background.start(name, work, runs.audited(store, who.name, action, name))
        except DeployerError as exc:
            store.audit(who.name, action, name, "refused", exc.message)
            raise
        return {"run_id": run_id, "events": f"/api/v1/runs/{run_id}/events"}

    return app


def log_text(lines: Iterator[str]) -> Iterator[str]:
    """The log's lines as text chunks; a log that cannot be read fails here, before the
    response starts (its error is the request's status), not in the middle of the body."""
    first = next(lines, None)

    def chunks() -> Iterator[str]:
        if first is None:
            return
        batch = [first]
        for line in lines:
            batch.append(line)
            if len(batch) >= 1000:
                yield "\n".join(batch) + "\n"
                batch = []
        if batch:
            yield "\n".join(batch) + "\n"

    return chunks()


def status_for(exc: DeployerError) -> int:
    """The HTTP status of a facade error."""
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConcurrentRunError):
        return 409
    if isinstance(exc, ManifestError | PlanError):
        return 422
    if isinstance(exc, InvalidNameError):
        return 400
    if isinstance(exc, TemporaryError):
        return 503
    return 500 if type(exc) is DeployerError else 400


def error_body(exc: DeployerError) -> dict[str, Any]:
    body: dict[str, Any] = {"code": exc.code, "message": exc.message, "hint": exc.hint}
    if isinstance(exc, ManifestError):
        body["problems"] = [located(p) for p in exc.problems]
    return body


def _posted(exc: ManifestError) -> HTTPException:
    """The problems of a posted manifest, located in the posted text (not in the file it is
    kept as)."""
    return HTTPException(
        422,
        detail={
            "code": exc.code,
            "message": f"the manifest has {len(exc.problems)} problem(s)",
            "problems": [located(p, posted=True) for p in exc.problems],
        },
    )


def _runs(history: list[tuple[Any, list[Any]]]) -> list[dict[str, Any]]:
    return [{**_json(run), "steps": [_json(step) for step in steps]} for run, steps in history]


def _json(record: object) -> dict[str, Any]:
    """A state record (a frozen dataclass) as JSON."""
    out: dict[str, Any] = json.loads(json.dumps(asdict(record), default=str))  # type: ignore[call-overload]
    return out


async def _follow(store: StateStore, run_id: int) -> AsyncIterator[str]:
    """The run's events as SSE frames, new ones as they are recorded, then ``end``."""
    sent = 0
    while True:
        run = await asyncio.to_thread(store.get_run, run_id)
        events = await asyncio.to_thread(store.list_events, run_id)
        for event in events[sent:]:
            yield f"id: {event.id}\nevent: {event.kind}\ndata: {json.dumps(_json(event))}\n\n"
        sent = len(events)
        if run is None or run.status is not RunStatus.RUNNING:
            status = run.status.value if run else "gone"
            yield f"event: end\ndata: {json.dumps({'run_id': run_id, 'status': status})}\n\n"
            return
        await asyncio.sleep(FOLLOW_POLL)
