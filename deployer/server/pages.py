"""The dashboard's pages: server-rendered with Jinja2 (every value escaped), htmx for the parts
that refresh, no JavaScript of deployer's own beyond a confirmation.

A browser logs in once with a token and then holds a session cookie (see
:mod:`deployer.server.sessions`); every form that changes something carries the session's CSRF
token, and a POST without the right one is refused (403) before anything happens.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from deployer import api
from deployer.errors import DeployerError, ManifestError
from deployer.events import EventBus
from deployer.server import auth
from deployer.server.intents import LatestPlans
from deployer.server.params import LogLines, RevisionQuery, RunId
from deployer.server.problems import located
from deployer.server.runs import Runs, audited
from deployer.server.sessions import COOKIE, LIFETIME, Sessions
from deployer.settings import Settings
from deployer.state import DeploymentStatus, RevisionRecord, Role, StateStore
from deployer.web import static_dir

HERE = Path(__file__).parent
#: The vendored htmx and uPlot (``scripts/vendor_web_assets.py``).
VENDOR = static_dir() / "vendor"


class _LoginNeeded(Exception):
    pass


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def add_pages(
    app: FastAPI,
    store: StateStore,
    background: Runs,
    sessions: Sessions,
    settings: Settings,
    plans: LatestPlans,
) -> None:
    """Register the dashboard on ``app``."""
    templates = Jinja2Templates(directory=HERE / "templates")
    app.mount("/static/vendor", StaticFiles(directory=VENDOR), name="vendor")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def who(request: Request) -> auth.Principal:
        found = sessions.check(store, request.cookies.get(COOKIE))
        if found is None:
            raise _LoginNeeded
        return found

    def page(request: Request, name: str, code: int = 200, **context: Any) -> HTMLResponse:
        cookie = request.cookies.get(COOKIE)
        context.setdefault("who", None)
        context["csrf"] = sessions.csrf(cookie) if cookie else ""
        return templates.TemplateResponse(request, name, context, status_code=code)

    async def form(request: Request) -> dict[str, str]:
        body = (await request.body()).decode("utf-8", errors="replace")
        return {k: v[0] for k, v in parse_qs(body).items()}

    async def checked(request: Request, needed: Role) -> auth.Principal:
        """The session's principal for a state-changing form: CSRF and role checked."""
        principal = who(request)
        fields = await form(request)
        if not sessions.csrf_ok(request.cookies.get(COOKIE), fields.get("csrf")):
            store.audit(principal.name, "csrf", request.url.path, "refused")
            raise _Refused(403, "this form is stale or not from this site: reload the page")
        if not principal.role.allows(needed):
            store.audit(principal.name, "denied", request.url.path, "refused")
            raise _Refused(403, f"this needs the {needed} role; you are {principal.role}")
        return principal

    @app.exception_handler(_LoginNeeded)
    async def _login(_request: Request, _exc: _LoginNeeded) -> Response:
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(_Refused)
    async def _refused(request: Request, exc: _Refused) -> Response:
        return page(request, "login.html", exc.status, problem=str(exc))

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form(request: Request) -> HTMLResponse:
        return page(request, "login.html")

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        principal = auth.authenticate(store, (await form(request)).get("token", "").strip())
        if principal is None:
            store.audit("anonymous", "login", None, "refused")
            return page(request, "login.html", 401, problem="that token is not valid")
        store.audit(principal.name, "login", None, "ok")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            COOKIE,
            sessions.issue(principal),
            max_age=LIFETIME,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        await checked(request, Role.VIEWER)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def fleet(request: Request, target: str = "", status: str = "") -> HTMLResponse:
        principal = who(request)
        views = api.status(settings)
        shown = [
            v
            for v in views
            if (not target or v.target == target) and (not status or v.status == status)
        ]
        loads = api.engine_load(shown)
        rows = [
            {"view": v, "live": _live(v), "load": _load(v, loads), "revision": _revision(v)}
            for v in shown
        ]
        return page(
            request,
            "fleet.html",
            who=principal,
            rows=rows,
            targets=sorted({v.target for v in views}),
            statuses=[s.value for s in DeploymentStatus],
            target=target,
            status=status,
        )

    @app.get("/deployments/{name}", response_class=HTMLResponse, include_in_schema=False)
    def deployment(request: Request, name: str) -> HTMLResponse:
        principal = who(request)
        [view] = api.status(settings, name)
        return page(
            request,
            "deployment.html",
            who=principal,
            view=view,
            live=_live(view),
            history=api.history(settings, name, limit=20),
            revisions=api.revisions(settings, name),
            smoke=api.smoke_history(settings, name, limit=20),
            can_act=principal.role.allows(Role.OPERATOR),
        )

    @app.get("/deployments/{name}/intent", response_class=HTMLResponse, include_in_schema=False)
    def intent(request: Request, name: str) -> HTMLResponse:
        who(request)
        [view] = api.status(settings, name)
        found = api.intent(settings, view, plans.of(name))
        argv = shlex.join(view.args) if view.args else ""
        return page(request, "intent.html", view=view, intent=found, argv=argv)

    @app.get("/deployments/{name}/logs", response_class=HTMLResponse, include_in_schema=False)
    def log_tail(request: Request, name: str, lines: LogLines = 200) -> HTMLResponse:
        who(request)
        try:
            text = "\n".join(api.logs(name, settings, lines))
        except DeployerError as exc:
            text = f"(no log: {exc.message})"
        return HTMLResponse(escape(text or "(the log is empty)"))

    @app.get("/apply", response_class=HTMLResponse, include_in_schema=False)
    def apply_form(request: Request, deployment: str = "") -> HTMLResponse:
        principal = who(request)
        latest = _latest(deployment) if deployment else None
        return page(
            request,
            "apply.html",
            who=principal,
            deployment=deployment,
            manifest=latest.manifest_text if latest else "",
            like=latest,
        )

    @app.post("/apply/preview", response_class=HTMLResponse, include_in_schema=False)
    async def apply_preview(request: Request) -> HTMLResponse:
        principal = await checked(request, Role.VIEWER)
        fields = await form(request)
        text, deployment = fields.get("manifest", ""), fields.get("deployment", "")
        latest = _latest(deployment) if deployment else None
        context: dict[str, Any] = {
            "who": principal,
            "deployment": deployment,
            "manifest": text,
            "like": latest,
            "can_act": principal.role.allows(Role.OPERATOR),
        }
        try:
            loaded = api.posted_manifest(settings, text, latest)
            plan = api.plan_loaded(loaded, settings)
        except ManifestError as exc:
            store.audit(principal.name, "plan", deployment or None, "refused", exc.reason)
            problems = [located(p, posted=True) for p in exc.problems]
            return page(request, "apply.html", 422, problems=problems, **context)
        except DeployerError as exc:
            store.audit(principal.name, "plan", deployment or None, "refused", exc.message)
            return page(request, "apply.html", 422, refused=exc, **context)
        store.audit(principal.name, "plan", plan.deployment, "ok")
        changed = _changed(latest, text)
        return page(request, "apply.html", plan=plan, changed=changed, **context)

    @app.post("/apply", include_in_schema=False)
    async def apply_posted(request: Request) -> Response:
        principal = await checked(request, Role.OPERATOR)  # before the text is kept anywhere
        fields = await form(request)
        text, deployment = fields.get("manifest", ""), fields.get("deployment", "")
        latest = _latest(deployment) if deployment else None
        try:
            loaded = api.posted_manifest(settings, text, latest)
        except ManifestError as exc:
            store.audit(principal.name, "apply", deployment or None, "refused", exc.reason)
            raise _Refused(422, exc.message) from None
        name = loaded.deployment.name
        return started(principal, "apply", name, lambda e: api.apply_loaded(loaded, settings, e))

    def _latest(name: str) -> RevisionRecord | None:
        found = api.revisions(settings, name)
        return found[0] if found else None

    @app.get("/deployments/{name}/diff", response_class=HTMLResponse, include_in_schema=False)
    def diff(
        request: Request, name: str, older: RevisionQuery, newer: RevisionQuery
    ) -> HTMLResponse:
        principal = who(request)
        return page(
            request,
            "diff.html",
            who=principal,
            diff=api.revision_diff(settings, name, min(older, newer), max(older, newer)),
        )

    async def launch(
        request: Request, verb: str, name: str, work: Callable[[EventBus], object]
    ) -> Response:
        """Start a run from a form (CSRF and role checked first) and show its page."""
        return started(await checked(request, Role.OPERATOR), verb, name, work)

    def started(
        principal: auth.Principal, verb: str, name: str, work: Callable[[EventBus], object]
    ) -> Response:
        """Start ``principal``'s run (checked already) and show its page."""
        run_id = background.start(name, work, audited(store, principal.name, verb, name))
        return RedirectResponse(f"/runs/{run_id}", status_code=303)

    @app.post("/deployments/{name}/smoke", include_in_schema=False)
    async def smoke(request: Request, name: str) -> Response:
        return await launch(request, "smoke", name, lambda e: api.smoke(name, settings, e))

    @app.post("/deployments/{name}/destroy", include_in_schema=False)
    async def destroy(request: Request, name: str) -> Response:
        return await launch(request, "destroy", name, lambda e: api.destroy(name, settings, e))

    @app.post("/deployments/{name}/rollback", include_in_schema=False)
    async def rollback(request: Request, name: str, revision: RevisionQuery) -> Response:
        # An unknown revision fails before its run is recorded: a 404, no run.
        return await launch(
            request, "rollback", name, lambda e: api.rollback(name, revision, settings, e)
        )

    def run_context(run_id: int) -> dict[str, Any]:
        run = store.get_run(run_id)
        if run is None:
            raise _Refused(404, f"no run {run_id}")
        return {"run": run, "steps": store.list_steps(run_id), "events": store.list_events(run_id)}

    @app.get("/runs/{run_id}", response_class=HTMLResponse, include_in_schema=False)
    def run_page(request: Request, run_id: RunId) -> HTMLResponse:
        return page(request, "run.html", who=who(request), **run_context(run_id))

    @app.get("/runs/{run_id}/body", response_class=HTMLResponse, include_in_schema=False)
    def run_body(request: Request, run_id: RunId) -> HTMLResponse:
        who(request)
        return page(request, "run_body.html", **run_context(run_id))


def _changed(latest: RevisionRecord | None, text: str) -> str | None:
    """A unified diff from ``latest``'s manifest to ``text`` (None: a new deployment)."""
    if latest is None:
        return None
    return "".join(
        difflib.unified_diff(
            latest.manifest_text.splitlines(keepends=True),
            text.splitlines(keepends=True),
            f"revision {latest.number}",
            "this manifest",
        )
    )


def _revision(view: api.DeploymentView) -> str:
    """The model revision that runs, short: a hub commit's first 12 characters, or the model
    folder's name."""
    model = view.running_model
    if not model:
        return "-"
    if re.fullmatch(r"[0-9a-f]{40}", model):
        return model[:12]
    return model.rstrip("/").rsplit("/", 1)[-1]


def _live(view: api.DeploymentView) -> str:
    if view.healthy:
        return "healthy"
    return "running" if view.running else "down"


def _load(view: api.DeploymentView, loads: dict[str, Any]) -> dict[str, str]:
    found = loads.get(view.endpoint or "")
    if found is None or view.replicas:
        return {"running": "-", "waiting": "-", "kv": "-"}
    if isinstance(found, str):
        return {"running": "metrics unavailable", "waiting": "", "kv": ""}
    kv = found.kv_cache_usage
    return {
        "running": _number(found.requests_running),
        "waiting": _number(found.requests_waiting),
        "kv": f"{kv:.1%}" if kv is not None else "-",
    }


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


__all__ = ["add_pages"]
