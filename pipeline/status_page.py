"""The status page on the worker's web view: what Helios sees, for a person with a browser.

* ``GET /``: the deployments this worker owns, with a filter, their replicas now and recommended,
  anomaly severity and how old their latest prediction is;
* ``GET /deployments/{namespace}/{deployment}``: charts of one deployment, drawn in the browser by the
  vendored uPlot (``pipeline/static/``) from
* ``GET /deployments/{namespace}/{deployment}/history``: JSON from the deployment's ring
  (:mod:`pipeline.history`), documented in ``/openapi.json``.

A deployment another worker owns is forwarded to its owner, like ``/predict``. Nothing is fetched from
anywhere but the worker, and every HTML response carries a strict Content-Security-Policy (scripts and
styles only from the worker's own ``/static/``, no inline script). Every value from the stream is
escaped. With ``HELIOS_API_TOKEN`` set, the pages and the history need the token: as a bearer header, or
once as ``?token=`` which the worker exchanges for a cookie (an HMAC of the token, not the token itself;
HttpOnly, SameSite=Strict) and redirects to the same page without it.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import html
import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, urlencode

import orjson
from faust import web

from pipeline.durations import parse_duration
from pipeline.settings import Settings
from pipeline.web import FORWARDED, _error_body, owner_url

if TYPE_CHECKING:
    from pipeline.app import Helios

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
_TYPES = {".js": "text/javascript", ".css": "text/css", ".txt": "text/plain"}

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    # A token in the query string must not leak to another site through the Referer header.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
COOKIE = "helios_session"
#: Rows the index lists at most; the filter narrows the rest down.
INDEX_ROWS = 500
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")


def session_cookie(token: str) -> str:
    """The cookie value that stands for ``token``: it opens the pages, never the POST endpoints."""
    return hmac.new(token.encode(), b"helios status page", hashlib.sha256).hexdigest()


def _age(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _head(title: str, script: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
        f"<title>{html.escape(title)}</title>"
        '<link rel="stylesheet" href="/static/uPlot.min.css">'
        '<link rel="stylesheet" href="/static/status.css">'
        f'<script src="/static/{script}" defer></script></head>\n'
    )


def index_html(helios: Helios, query: str, now: float) -> str:
    """The list of owned deployments (``query``: a substring of namespace/deployment)."""
    entries = helios.runtime.entries
    needle = query.strip().lower()
    keys = sorted(k for k in entries if needle in k.lower())
    rows = []
    for key in keys[:INDEX_ROWS]:
        entry = entries[key]
        latest = entry.history.latest() if entry.history is not None else None
        ns, dep = entry.pipeline.namespace, entry.pipeline.deployment
        href = f"/deployments/{quote(ns, safe='')}/{quote(dep, safe='')}"
        sev = latest["severity"] if latest else "normal"
        cpu = None if not latest or latest["cpu"] is None else f"{100 * latest['cpu']:.0f} %"
        cells = [
            f'<td><a href="{html.escape(href)}">{html.escape(key)}</a></td>',
            f"<td>{_cell(latest and latest['replicas'])}</td>",
            f"<td>{_cell(latest and latest['recommended'])}</td>",
            f'<td><span class="sev sev-{html.escape(sev)}">{html.escape(sev)}</span></td>',
            f"<td>{_cell(cpu)}</td>",
            f"<td>{html.escape(_age(max(0.0, now - entry.last_seen)))}</td>",
        ]
        rows.append(f'<tr data-key="{html.escape(key.lower())}">{"".join(cells)}</tr>')
    shown = min(len(keys), INDEX_ROWS)
    note = f"{len(entries)} deployments on this worker"
    if needle:
        note += f", {len(keys)} match"
    if shown < len(keys):
        note += f"; the first {shown} are listed, narrow the filter to see the others"
    return (
        _head("Helios status", "index.js")
        + '<body><header><h1>Helios</h1><span class="sub">'
        + html.escape(f"{note} · port {helios.settings.port}")
        + "</span></header><main>"
        + '<form method="get" action="/" class="controls"><label>filter '
        + f'<input type="search" id="filter" name="q" value="{html.escape(query)}" '
        + 'placeholder="namespace/deployment" autocomplete="off"></label></form>'
        + '<table id="deployments"><thead><tr><th>deployment</th><th>replicas</th><th>recommended</th>'
        + "<th>anomaly</th><th>CPU</th><th>prediction age</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
        + ("" if rows else '<p class="empty">No deployment has sent a sample to this worker yet.</p>')
        + '<p class="sub">A deployment another worker owns: <code>/deployments/NAMESPACE/DEPLOYMENT</code> '
        + "on any worker is forwarded to it.</p></main></body></html>\n"
    )


def _cell(value: Any) -> str:
    return "–" if value is None or value is False else html.escape(str(value))


def deployment_html(namespace: str, deployment: str, history_seconds: float, horizons: list[str]) -> str:
    """The chart page's shell; ``static/status.js`` fills it from the history endpoint."""
    key = f"{namespace}/{deployment}"
    base = f"/deployments/{quote(namespace, safe='')}/{quote(deployment, safe='')}"
    windows = [w for w in (900, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 24 * 3600) if w < history_seconds]
    windows.append(int(history_seconds))
    options = "".join(
        f'<option value="{w}"{" selected" if w == windows[-1] else ""}>{_age(w)}</option>' for w in windows
    )
    default = "15m" if "15m" in horizons else horizons[0]
    horizon_options = "".join(
        f'<option value="{html.escape(h)}"{" selected" if h == default else ""}>{html.escape(h)}</option>'
        for h in horizons
    )
    charts = "".join(
        f'<section><h2>{title}</h2><div id="chart-{name}" class="chart" data-chart="{name}"></div></section>'
        for name, title in (
            ("cpu", "CPU utilisation: actual, and the forecast band drawn at the time it forecast"),
            ("memory", "Memory utilisation: actual, and the forecast band drawn at the time it forecast"),
            ("anomaly", "Anomaly score (σ) against the threshold; detections marked by severity"),
            ("replicas", "Replicas: current, recommended, and what a reactive HPA would ask for"),
        )
    )
    return (
        _head(f"Helios · {key}", "status.js")
        + f'<body data-history="{html.escape(base)}/history">'
        + '<header><h1><a href="/">Helios</a></h1><span class="key">'
        + html.escape(key)
        + '</span><span class="sub" id="status">loading…</span></header><main>'
        + '<div class="controls"><label>window <select id="window">'
        + options
        + '</select></label><label>forecast horizon <select id="horizon">'
        + horizon_options
        + '</select></label><span id="summary"></span></div>'
        + charts
        + '<section><h2>Latest recommendations</h2><table id="recommendations"><thead><tr><th>window</th>'
        + "<th>action</th><th>replicas</th><th>rule</th><th>reason</th><th>evidence</th></tr></thead>"
        + "<tbody></tbody></table></section>"
        + '<div class="pair"><section><h2>Forecast accuracy (live)</h2><table id="accuracy"><thead><tr>'
        + "<th>feature</th><th>horizon</th><th>MAE</th><th>coverage</th></tr></thead><tbody></tbody></table>"
        + '</section><section><h2>Models</h2><table id="models"><thead><tr><th>model</th><th>version</th>'
        + "<th>loaded</th></tr></thead><tbody></tbody></table></section></div>"
        + '</main><script src="/static/uPlot.iife.min.js"></script></body></html>\n'
    )


def history_json(helios: Helios, key: str, window: float | None, now: float) -> dict[str, Any] | None:
    """The history endpoint's body for ``key``, or None when this worker does not hold it."""
    entry = helios.runtime.entries.get(key)
    if entry is None or entry.history is None:
        return None
    settings = helios.settings
    by_step = {steps: label for label, steps in settings.horizon_steps.items()}
    accuracy = {
        feature: {
            by_step[step]: {"mae": mae, "coverage": cov}
            for step, (mae, cov) in forecaster.accuracy().items()
            if step in by_step
        }
        for feature, forecaster in entry.pipeline.forecasters.items()
    }
    models = helios.models.infos({}, prophet_available=helios.prophet.available)
    return {
        "namespace": entry.pipeline.namespace,
        "deployment": entry.pipeline.deployment,
        "generated_at": datetime.fromtimestamp(now, tz=UTC).isoformat(),
        "step_seconds": settings.scoring_interval,
        "level": settings.risk_level,
        "threshold": settings.anomaly_threshold,
        "cpu_scale_up": settings.cpu_scale_up,
        "memory_warning": settings.memory_warning,
        **entry.history.to_json(window),
        "recommendations": entry.history.recommendations(),
        "accuracy": accuracy,
        "models": [m.model_dump(mode="json") for m in models],
    }


@dataclass(frozen=True)
class Access:
    """Who may see the pages: everybody, or (with ``HELIOS_API_TOKEN``) a bearer token or its cookie."""

    bearer: bytes | None
    cookie: str | None

    @classmethod
    def from_settings(cls, settings: Settings) -> Access:
        if settings.api_token is None:
            return cls(None, None)
        secret = settings.api_token.get_secret_value()
        return cls(hashlib.sha256(secret.encode()).digest(), session_cookie(secret))

    def matches(self, given: str) -> bool:
        return self.bearer is not None and hmac.compare_digest(
            hashlib.sha256(given.strip().encode()).digest(), self.bearer
        )

    def allows(self, request: web.Request) -> bool:
        if self.bearer is None or self.cookie is None:
            return True
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self.matches(given):
            return True
        return hmac.compare_digest(request.cookies.get(COOKIE, ""), self.cookie)


#: The status page's views; ``create_app`` registers it next to :data:`pipeline.web.blueprint`.
blueprint = web.Blueprint("status")


@dataclass(frozen=True)
class StaticFile:
    """A file of ``pipeline/static/``, read once, with the ETag a browser revalidates against."""

    body: bytes
    content_type: str
    etag: str


@functools.cache
def static_files() -> dict[str, StaticFile]:
    """The vendored files by name; read once per process, they do not change while it runs."""
    files = {}
    for path in sorted(STATIC.iterdir()):
        if path.suffix in _TYPES and path.is_file():
            body = path.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            files[path.name] = StaticFile(body, _TYPES[path.suffix], etag)
    return files


class HistoryCache:
    """Encoded history bodies, each until its deployment's next output.

    The ring, the live accuracy and the recommendations change only with an output, so a page polling
    between two windows is answered from bytes instead of decoding and re-encoding the ring on the event
    loop. ``generated_at`` says when the bytes were built. At most ``size`` bodies (a full ring's is
    ~80 KB) are held, the least recently asked for dropped first: a crawl of every page must not hold
    the whole fleet's history twice.
    """

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._held: OrderedDict[tuple[str, float | None], tuple[tuple[Any, ...], bytes]] = OrderedDict()

    def get(self, helios: Helios, key: str, window: float | None, now: float) -> bytes | None:
        entry = helios.runtime.entries.get(key)
        slot = (key, window)
        if entry is None or entry.history is None:
            self._held.pop(slot, None)
            return None
        version = (entry.version, helios.models.loaded_at, helios.prophet.available)
        held = self._held.get(slot)
        if held is not None and held[0] == version:
            self._held.move_to_end(slot)
            return held[1]
        body = history_json(helios, key, window, now)
        if body is None:
            return None
        encoded = orjson.dumps(body)
        self._held[slot] = (version, encoded)
        self._held.move_to_end(slot)
        while len(self._held) > self.size:
            self._held.popitem(last=False)
        return encoded


class StatusView(web.View):
    """What the status views share: HTML with the security headers, errors, the token, forwarding."""

    helios: Helios
    access: Access

    def __post_init__(self) -> None:
        self.helios = cast(Any, self.app).helios
        self.access = Access.from_settings(self.helios.settings)

    def page(self, body: str, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        return self.bytes(
            body.encode(),
            content_type="text/html",
            status=status,
            headers={**_SECURITY_HEADERS, **(headers or {})},
        )

    def fail(self, status: int, error: str, as_html: bool) -> web.Response:
        if as_html:
            return self.page(_message_html(error), status)
        return self.bytes(_error_body(error), content_type="application/json", status=status)

    def denied(self, request: Any, as_html: bool) -> web.Response | None:
        """None when the request may see the pages; else a 401, or the redirect that sets the cookie."""
        if self.access.allows(request):
            return None
        offered = request.query.get("token")
        if offered is not None and self.access.matches(offered):
            rest = {k: v for k, v in request.query.items() if k != "token"}
            cookie = f"{COOKIE}={self.access.cookie}; Path=/; HttpOnly; SameSite=Strict"
            target = request.path + (f"?{urlencode(rest)}" if rest else "")
            return self.page(_message_html("Signed in."), 303, {"Location": target, "Set-Cookie": cookie})
        if as_html:
            return self.page(_token_form_html(request.path, offered is not None), 401)
        response = self.fail(401, "missing or wrong bearer token or cookie (HELIOS_API_TOKEN set)", False)
        response.headers["WWW-Authenticate"] = 'Bearer realm="helios"'
        return response

    async def forwarded(self, request: Any, key: str) -> web.Response | None:
        """The owner's answer when another worker owns ``key`` (as ``/predict`` forwards)."""
        app = cast(Any, self.app)
        url = owner_url(app, self.helios, request, key)
        if url is None:
            return None
        headers = {FORWARDED: "1"}
        for name in ("Authorization", "Cookie"):
            if name in request.headers:
                headers[name] = request.headers[name]
        try:
            async with app.http_client.get(str(url), headers=headers) as resp:
                body = await resp.read()
                kind = resp.headers.get("Content-Type", "application/json").split(";")[0]
                extra = _SECURITY_HEADERS if kind == "text/html" else {}
                return self.bytes(body, content_type=kind, status=resp.status, headers=dict(extra))
        except Exception as exc:
            log.warning("forwarding %s for %s to %s failed: %s", request.path, key, url, exc)
            return None


def checked_key(namespace: str, deployment: str) -> str | None:
    """``namespace/deployment`` when both are names a record could carry, else None."""
    if _NAME.match(namespace) and _NAME.match(deployment) and len(namespace) <= 63:
        return f"{namespace}/{deployment}"
    return None


def history_window(query: Any, settings: Settings) -> float | None:
    """The ``window`` query parameter in seconds (None: the ring); ValueError says what is wrong."""
    if "window" not in query:
        return None
    # Shorter than a window shows one window; longer than the ring, the whole ring.
    return parse_duration(query["window"])


@blueprint.route("/")
class Index(StatusView):
    async def get(self, request: web.Request) -> web.Response:
        if (denied := self.denied(request, as_html=True)) is not None:
            return denied
        helios = self.helios
        return self.page(index_html(helios, request.query.get("q", "")[:200], helios.clock()))


@blueprint.route("/deployments/{namespace}/{deployment}")
class DeploymentPage(StatusView):
    async def get(self, request: Any, namespace: str, deployment: str) -> web.Response:
        if (denied := self.denied(request, as_html=True)) is not None:
            return denied
        key = checked_key(namespace, deployment)
        if key is None:
            return self.fail(404, "not a namespace/deployment name", as_html=True)
        if (routed := await self.forwarded(request, key)) is not None:
            return routed
        if key not in self.helios.runtime.entries:
            return self.fail(404, f"no deployment {key} on this worker or its owner", as_html=True)
        settings = self.helios.settings
        horizons = list(settings.horizon_steps)
        return self.page(deployment_html(namespace, deployment, settings.history, horizons))


@blueprint.route("/deployments/{namespace}/{deployment}/history")
class History(StatusView):
    def __post_init__(self) -> None:
        super().__post_init__()
        self.cache = HistoryCache()

    async def get(self, request: web.Request, namespace: str, deployment: str) -> web.Response:
        if (denied := self.denied(request, as_html=False)) is not None:
            return denied
        key = checked_key(namespace, deployment)
        if key is None:
            return self.fail(404, "not a namespace/deployment name", as_html=False)
        helios = self.helios
        try:
            window = history_window(request.query, helios.settings)
        except ValueError as exc:
            return self.fail(422, f"window: {exc}", as_html=False)
        if (routed := await self.forwarded(request, key)) is not None:
            return routed
        started = time.perf_counter()
        encoded = self.cache.get(helios, key, window, helios.clock())
        if encoded is None:
            return self.fail(404, f"no history for {key} on this worker or its owner", as_html=False)
        helios.metrics.inference_duration.labels("/history").observe(time.perf_counter() - started)
        return self.bytes(encoded, content_type="application/json", headers={"Cache-Control": "no-store"})


@blueprint.route("/static/{name}")
class Static(StatusView):
    async def get(self, request: web.Request, name: str) -> web.Response:
        found = static_files().get(name)
        if found is None:
            return self.fail(404, f"no static file {name!r}", as_html=False)
        headers = {
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "max-age=3600",
            "ETag": found.etag,
        }
        # A browser that holds the file revalidates it: an empty 304 instead of the file again.
        if found.etag in request.headers.get("If-None-Match", ""):
            return self.bytes(b"", status=304, headers=headers)
        return self.bytes(found.body, content_type=found.content_type, headers=headers)


def _message_html(message: str) -> str:
    return (
        _head("Helios", "index.js")
        + f'<body><header><h1><a href="/">Helios</a></h1></header><main><p>{html.escape(message)}</p>'
        + "</main></body></html>\n"
    )


def _token_form_html(path: str, wrong: bool) -> str:
    note = "That token is wrong. " if wrong else ""
    return (
        _head("Helios · token", "index.js")
        + '<body><header><h1>Helios</h1></header><main><form method="get" action="'
        + html.escape(path)
        + '" class="controls"><p>'
        + html.escape(note)
        + "This worker has HELIOS_API_TOKEN set: enter it to see the status pages "
        + '(it is exchanged for a session cookie).</p><label>token <input type="password" name="token" '
        + 'autocomplete="off"></label> <button type="submit">open</button></form></main></body></html>\n'
    )
