"""``/openapi.json``: the web view's contract, generated from the pydantic models in :mod:`pipeline.api`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from pipeline import api
from pipeline.durations import DURATION_PATTERN
from pipeline.settings import Settings

_REF = "#/components/schemas/{model}"


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json(model: type[BaseModel]) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(model)}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Malformed JSON",
        401: "Missing or wrong bearer token (only when HELIOS_API_TOKEN is set)",
        409: "The requested model is not available for this deployment",
        413: "Body larger than HELIOS_MAX_BODY_BYTES",
        422: "The body or a parameter does not match the schema; the error names the field",
    }
    return {str(c): {"description": text[c], "content": _json(api.ErrorResponse)} for c in codes}


_MODELS: list[type[BaseModel]] = [
    api.PredictRequest,
    api.PredictResponse,
    api.DetectRequest,
    api.DetectResponse,
    api.RecommendRequest,
    api.RecommendResponse,
    api.HealthResponse,
    api.ReadyResponse,
    api.ModelsResponse,
    api.ErrorResponse,
    api.HistoryResponse,
]

_SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer"},
    "cookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": "helios_session",
        "description": "Set by the status page after ?token=HELIOS_API_TOKEN",
    },
}


def _history_path() -> dict[str, Any]:
    """The status page's data; the HTML pages themselves (``/``, ``/deployments/{ns}/{dep}``) are not API."""
    name = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$"}
    return {
        "get": {
            "summary": "A deployment's recent windows (HELIOS_HISTORY), forwarded to its owner",
            "security": [{"bearer": []}, {"cookie": []}, {}],
            "parameters": [
                {"name": "namespace", "in": "path", "required": True, "schema": name},
                {"name": "deployment", "in": "path", "required": True, "schema": name},
                {
                    "name": "window",
                    "in": "query",
                    "required": False,
                    "description": "How far back: seconds or 15m, 1h, 6h (default and most: the whole ring)",
                    "schema": {"type": "string", "pattern": DURATION_PATTERN},
                },
            ],
            "responses": {
                "200": {"description": "OK", "content": _json(api.HistoryResponse)},
                "404": {
                    "description": "No such deployment on this worker or its owner",
                    "content": _json(api.ErrorResponse),
                },
                **_errors(401, 422),
            },
        }
    }


def openapi_spec(settings: Settings | None = None) -> dict[str, Any]:
    models = _MODELS
    modes = [(m, "validation" if m.__name__.endswith("Request") else "serialization") for m in models]
    _, schema = models_json_schema(modes, ref_template=_REF)  # type: ignore[arg-type]
    if settings is not None:
        # The model admits up to 10,000; the worker's own bound is the setting.
        periods = schema["$defs"]["PredictRequest"]["properties"]["periods"]
        periods["maximum"] = settings.max_periods
    secured: list[dict[str, list[str]]] = [{"bearer": []}, {}]

    def post(
        summary: str, req: type[BaseModel], resp: type[BaseModel], extra: tuple[int, ...]
    ) -> dict[str, Any]:
        return {
            "post": {
                "summary": summary,
                "security": secured,
                "requestBody": {"required": True, "content": _json(req)},
                "responses": {
                    "200": {"description": "OK", "content": _json(resp)},
                    **_errors(400, 401, 413, 422, *extra),
                },
            }
        }

    def get(summary: str, resp: type[BaseModel], extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "get": {
                "summary": summary,
                "responses": {"200": {"description": "OK", "content": _json(resp)}, **(extra or {})},
            }
        }

    return {
        "openapi": "3.1.0",
        "info": {"title": "Helios worker", "version": "1.0.0"},
        "components": {
            "schemas": schema.get("$defs", {}),
            "securitySchemes": _SECURITY_SCHEMES,
        },
        "paths": {
            "/health": get("Liveness", api.HealthResponse),
            "/ready": get(
                "Readiness: models loaded, broker reachable, partitions assigned",
                api.ReadyResponse,
                {"503": {"description": "Not ready (reasons listed)", "content": _json(api.ReadyResponse)}},
            ),
            "/models": get("Models in service", api.ModelsResponse),
            "/predict": post(
                "Forecast CPU and memory with calibrated bands",
                api.PredictRequest,
                api.PredictResponse,
                (409,),
            ),
            "/detect": post(
                "Score metrics for anomalies (on priors while warming up)",
                api.DetectRequest,
                api.DetectResponse,
                (),
            ),
            "/recommend": post("Recommend scaling", api.RecommendRequest, api.RecommendResponse, ()),
            "/deployments/{namespace}/{deployment}/history": _history_path(),
            "/metrics": {
                "get": {
                    "summary": "Prometheus exposition",
                    "responses": {
                        "200": {
                            "description": "OK",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
    }
