"""The worker's web view: health, readiness, models, ad-hoc inference, metrics and the OpenAPI spec.

Every error is JSON naming the field and the problem: malformed JSON is 400, a body over
``HELIOS_MAX_BODY_BYTES`` is 413, a schema violation is 422, a missing or wrong bearer token is
401, an unavailable model is 409, an unknown route 404. A bug answers 500 with a short JSON body
and is logged; no traceback ever reaches a client.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

import faust
import orjson
from aiohttp import web as aioweb
from faust import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError

from pipeline import serving
from pipeline.api import (
    DetectRequest,
    ErrorDetail,
    ErrorResponse,
    HealthResponse,
    ModelsResponse,
    PredictRequest,
    ReadyResponse,
    RecommendRequest,
)
from pipeline.openapi import openapi_spec
from pipeline.settings import Settings

if TYPE_CHECKING:
    from pipeline.app import Helios, HeliosApp

log = logging.getLogger(__name__)

#: Set on a request one worker forwards to the deployment's owner, so it is never forwarded twice.
FORWARDED = "X-Helios-Forwarded"

M = TypeVar("M", bound=BaseModel)


def _error_body(error: str, details: list[ErrorDetail] | None = None) -> bytes:
    return ErrorResponse(error=error, details=details or []).model_dump_json().encode()


def _json_error(status: int, error: str, details: list[ErrorDetail] | None = None) -> aioweb.Response:
    return aioweb.Response(body=_error_body(error, details), status=status, content_type="application/json")


@aioweb.middleware
async def json_errors(
    request: aioweb.Request, handler: Callable[[aioweb.Request], Awaitable[aioweb.StreamResponse]]
) -> aioweb.StreamResponse:
    """aiohttp's own 404/405/413 become JSON; anything unexpected is a logged 500 without a traceback."""
    try:
        return await handler(request)
    except aioweb.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _json_error(exc.status, exc.reason)
        if "Allow" in exc.headers:  # a 405 says which methods the route takes
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        log.exception("unhandled error serving %s %s", request.method, request.path)
        return _json_error(500, "internal error; see the worker's log")


def application_options(settings: Settings) -> dict[str, Any]:
    # A little headroom so an oversized body is refused by our own check with a precise message.
    return {"client_max_size": settings.max_body_bytes + 1, "middlewares": [json_errors]}


def _validation_details(exc: ValidationError) -> list[ErrorDetail]:
    return [
        ErrorDetail(field=".".join(str(p) for p in err["loc"]) or None, problem=err["msg"])
        for err in exc.errors()
    ]


def owner_url(app: faust.App, helios: Helios, request: Any, key: str) -> Any:
    """``request``'s URL on the worker that owns ``key``'s partition, or None to answer here."""
    if request.headers.get(FORWARDED) or key in helios.runtime.entries:
        return None
    try:
        # The worker that consumes the key's partition of the metrics topic holds its state
        # (the table is co-partitioned with it). Faust's table router hashes the table's own
        # key encoding, which differs from the ingesters' bytes, so route on the source topic.
        owner = app.router.external_topic_key_store(helios.metrics_topic, key.encode())
    except Exception as exc:
        log.info("no owner known for %s (%s: %s); answering here", key, type(exc).__name__, exc)
        return None
    if (owner.host, owner.port) == (app.conf.canonical_url.host, app.conf.canonical_url.port):
        return None
    return request.url.with_host(str(owner.host)).with_port(owner.port)


def token_digest(settings: Settings) -> bytes | None:
    """SHA-256 of ``HELIOS_API_TOKEN``, or None when the API is open.

    Digests of equal length, so the comparison's timing says nothing about the token's length either.
    """
    if not settings.api_token:
        return None
    return hashlib.sha256(settings.api_token.get_secret_value().encode()).digest()


def bearer_ok(header: str, token: bytes | None) -> bool:
    """Whether an ``Authorization`` header carries the token (always, when none is set)."""
    if token is None:
        return True
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        hashlib.sha256(given.strip().encode()).digest(), token
    )


#: The worker's JSON API; ``create_app`` registers it on every app it builds.
blueprint = web.Blueprint("helios")


class JsonView(web.View):
    """A view of the worker's JSON API: replies, errors that name the field, auth, parsing, routing."""

    helios: Helios
    token: bytes | None

    def __post_init__(self) -> None:
        self.helios = cast("HeliosApp", self.app).helios
        self.token = token_digest(self.helios.settings)

    def reply(self, model: BaseModel, status: int = 200) -> web.Response:
        return self.bytes(model.model_dump_json().encode(), content_type="application/json", status=status)

    def fail(self, status: int, error: str, details: list[ErrorDetail] | None = None) -> web.Response:
        return self.bytes(_error_body(error, details), content_type="application/json", status=status)

    def unauthorised(self, request: web.Request) -> web.Response | None:
        if bearer_ok(request.headers.get("Authorization", ""), self.token):
            return None
        response = self.fail(401, "missing or wrong bearer token (HELIOS_API_TOKEN is set)")
        response.headers["WWW-Authenticate"] = 'Bearer realm="helios"'
        return response

    async def parse(self, request: Any, model: type[M]) -> M | web.Response:
        limit = self.helios.settings.max_body_bytes
        length = request.content_length
        if length is not None and length > limit:
            return self.fail(413, f"body of {length} bytes exceeds HELIOS_MAX_BODY_BYTES={limit}")
        try:
            body = await request.read()
        except aioweb.HTTPRequestEntityTooLarge:
            return self.fail(413, f"body exceeds HELIOS_MAX_BODY_BYTES={limit}")
        if len(body) > limit:
            return self.fail(413, f"body exceeds HELIOS_MAX_BODY_BYTES={limit}")
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return self.fail(400, f"malformed JSON: {exc}", [ErrorDetail(field=None, problem=str(exc))])
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            return self.fail(422, "request does not match the schema", _validation_details(exc))

    async def forward(self, request: Any, key: str, body: bytes) -> web.Response | None:
        """Answer from the worker that owns ``key``'s partition (Faust's table routing)."""
        url = owner_url(self.helios.app, self.helios, request, key)
        if url is None:
            return None
        headers = {"Content-Type": "application/json", FORWARDED: "1"}
        if "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        try:
            async with self.app.http_client.post(str(url), data=body, headers=headers) as resp:
                return self.bytes(await resp.read(), content_type="application/json", status=resp.status)
        except Exception as exc:
            log.warning("forwarding %s for %s to %s failed: %s", request.path, key, url, exc)
            return None

    async def infer(
        self,
        request: web.Request,
        model: type[M],
        endpoint: str,
        answer: Callable[[Helios, M, str], BaseModel],
        route: bool = True,
    ) -> web.Response:
        """Authorise, parse, route to the deployment's owner, answer, time it; errors name the field."""
        if (denied := self.unauthorised(request)) is not None:
            return denied
        req = await self.parse(request, model)
        if not isinstance(req, model):
            return cast(web.Response, req)  # the error response parse() built
        key = self.key_of(getattr(req, "namespace", None), getattr(req, "deployment", None))
        if route and (routed := await self.forward(request, key, await request.read())) is not None:
            return routed
        started = time.perf_counter()
        try:
            result = answer(self.helios, req, key)
        except serving.BadRequest as exc:
            return self.fail(exc.status, str(exc), [ErrorDetail(field=exc.field, problem=exc.problem)])
        self.helios.metrics.inference_duration.labels(endpoint).observe(time.perf_counter() - started)
        return self.reply(result)

    def key_of(self, namespace: str | None, deployment: str | None) -> str:
        settings = self.helios.settings
        return f"{namespace or settings.metrics_namespace}/{deployment or settings.metrics_deployment}"


def predict(helios: Helios, req: PredictRequest, key: str) -> BaseModel:
    settings, runtime = helios.settings, helios.runtime
    if req.periods > settings.max_periods:
        raise serving.BadRequest("periods", f"at most HELIOS_MAX_PERIODS={settings.max_periods}")
    entry = runtime.entries.get(key)
    live = entry.pipeline if entry is not None else None
    if req.model == "prophet" or (req.model == "auto" and helios.prophet.prefers(key, live)):
        return helios.prophet.predict(req, key, runtime.config, helios.clock())
    return serving.predict(req, live, runtime.config, helios.clock(), key)


def detect(helios: Helios, req: DetectRequest, key: str) -> BaseModel:
    runtime = helios.runtime
    entry = runtime.entries.get(key)
    fleet = (e.pipeline.detector for k, e in runtime.entries.items() if k != key)
    return serving.detect(
        req, entry.pipeline if entry else None, runtime.config, helios.models.xgb, key, fleet
    )


def recommend(helios: Helios, req: RecommendRequest, key: str) -> BaseModel:
    return serving.recommend(req, helios.runtime.config, helios.clock())


@blueprint.route("/health")
class Health(JsonView):
    async def get(self, request: web.Request) -> web.Response:
        return self.reply(HealthResponse(status="healthy", timestamp=datetime.now(UTC)))


@blueprint.route("/ready")
class Ready(JsonView):
    async def get(self, request: web.Request) -> web.Response:
        helios = self.helios
        ready, reasons = helios.readiness.check(self.app)
        loaded = [m.name for m in helios.models.infos({}, prophet_available=helios.prophet.available)]
        return self.reply(
            ReadyResponse(ready=ready, models_loaded=loaded, reasons=reasons), 200 if ready else 503
        )


@blueprint.route("/models")
class Models(JsonView):
    async def get(self, request: web.Request) -> web.Response:
        helios = self.helios
        infos = helios.models.infos(helios.online_model_metrics(), prophet_available=helios.prophet.available)
        return self.reply(ModelsResponse(models=infos))


@blueprint.route("/predict")
class Predict(JsonView):
    async def post(self, request: web.Request) -> web.Response:
        return await self.infer(request, PredictRequest, "/predict", predict)


@blueprint.route("/detect")
class Detect(JsonView):
    async def post(self, request: web.Request) -> web.Response:
        return await self.infer(request, DetectRequest, "/detect", detect)


@blueprint.route("/recommend")
class Recommend(JsonView):
    async def post(self, request: web.Request) -> web.Response:
        # Stateless: answered where it lands, from the request alone.
        return await self.infer(request, RecommendRequest, "/recommend", recommend, route=False)


@blueprint.route("/metrics")
class Metrics(JsonView):
    async def get(self, request: web.Request) -> web.Response:
        return self.bytes(
            generate_latest(self.helios.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0]
        )


@blueprint.route("/openapi.json")
class OpenAPI(JsonView):
    def __post_init__(self) -> None:
        super().__post_init__()
        self.spec = orjson.dumps(openapi_spec(self.helios.settings))

    async def get(self, request: web.Request) -> web.Response:
        return self.bytes(self.spec, content_type="application/json")
