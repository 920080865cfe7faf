"""Models by name: ``HELIOS_FORECASTER`` / ``HELIOS_DETECTOR`` values parsed into models, never evaluated.

A value is either Helios' own model, ``helios`` (optionally ``helios(name=value, ...)`` with the
model's own keyword arguments), or a River class path with literal arguments::

    river.time_series.SNARIMAX(p=2, d=1, q=1, m=288)
    river.time_series.HoltWinters(alpha=0.3, beta=0.1, gamma=0.6, seasonality=288)
    river.preprocessing.MinMaxScaler() | river.anomaly.HalfSpaceTrees(n_trees=25, seed=42)
    river.time_series.SNARIMAX(p=12, m=288, sp=1, regressor=river.preprocessing.StandardScaler()
        | river.linear_model.LinearRegression(intercept_lr=0.1))

The text is parsed with :mod:`ast` in ``eval`` mode and only these nodes are accepted: calls of a
class path, keyword or positional arguments that are literals (numbers, strings, booleans, ``None``,
tuples and lists of them, a negated number) or nested allowed calls, and ``a | b`` (a River
pipeline). A class path names a public class of one of :data:`ALLOWED_MODULES`; nothing else is
imported and nothing is evaluated.

``river.time_series.HoltWinters`` is built as :class:`models.river_adapters.SafeHoltWinters`, which
fixes River's known pitfalls (see there).
"""

from __future__ import annotations

import ast
import importlib
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ALLOWED_MODULES",
    "HELIOS",
    "ModelSpec",
    "build",
    "describe",
    "detector_spec",
    "forecaster_spec",
    "make_detector",
    "make_forecaster",
    "parse_spec",
    "restore_detector",
    "restore_forecaster",
]

#: The only modules a class path may name.
ALLOWED_MODULES: frozenset[str] = frozenset(
    {
        "river.anomaly",
        "river.compose",
        "river.linear_model",
        "river.optim",
        "river.preprocessing",
        "river.time_series",
    }
)

#: The name of Helios' own model (for either setting).
HELIOS = "helios"


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model value: ``path`` is ``"helios"`` or a River class path; ``parts`` a pipeline.

    ``args`` and ``kwargs`` hold literals or nested :class:`ModelSpec` objects. ``text`` is the value
    as it was given (what state and ``/models`` record).
    """

    text: str
    path: str
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()
    parts: tuple[ModelSpec, ...] = ()

    @property
    def is_helios(self) -> bool:
        return self.path == HELIOS

    @property
    def options(self) -> dict[str, Any]:
        """The keyword arguments as a dict (literals only for ``helios``)."""
        return dict(self.kwargs)


def parse_spec(text: str) -> ModelSpec:
    """Parse a model value; ``ValueError`` says what is wrong with it.

    Examples
    --------
    >>> parse_spec("helios").is_helios
    True
    >>> s = parse_spec("river.time_series.SNARIMAX(p=2, d=1, q=1, m=288)")
    >>> s.path, s.options
    ('river.time_series.SNARIMAX', {'p': 2, 'd': 1, 'q': 1, 'm': 288})
    >>> parse_spec("__import__('os').system('true')")
    Traceback (most recent call last):
    ...
    ValueError: expected a class path with literal arguments, got __import__('os').system('true')
    >>> parse_spec("os.system('true')")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: os.system: module os is not allowed (allowed: river.anomaly, river.compose, ...)
    >>> parse_spec("river.anomaly.HalfSpaceTrees(n_trees=open('x'))")
    Traceback (most recent call last):
    ...
    ValueError: n_trees: arguments must be literals or allowed classes, got open
    """
    text = str(text).strip()
    if not text:
        raise ValueError("empty model name")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"not a model name: {exc.msg} at column {exc.offset}") from None
    return _model(tree.body, text)


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return None if head is None else f"{head}.{node.attr}"
    return None


def _model(node: ast.expr, text: str) -> ModelSpec:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        left, right = _model(node.left, text), _model(node.right, text)
        if left.is_helios or right.is_helios:
            raise ValueError("helios cannot be part of a River pipeline")
        parts = (left.parts or (left,)) + (right.parts or (right,))
        return ModelSpec(text=text, path="river.compose.Pipeline", parts=parts)
    call = node if isinstance(node, ast.Call) else None
    path = _dotted(call.func if call is not None else node)
    if path is None:
        raise ValueError(f"expected a class path with literal arguments, got {ast.unparse(node)}")
    if path != HELIOS:
        _resolve(path)
    args: list[Any] = []
    kwargs: list[tuple[str, Any]] = []
    if call is not None:
        for arg in call.args:
            args.append(_value(arg, text, f"argument {len(args) + 1} of {path}"))
        for kw in call.keywords:
            if kw.arg is None:
                raise ValueError(f"{path}: **kwargs are not accepted, name each argument")
            kwargs.append((kw.arg, _value(kw.value, text, kw.arg)))
    if path == HELIOS and (args or any(isinstance(v, ModelSpec) for _, v in kwargs)):
        raise ValueError("helios takes keyword arguments with literal values only")
    return ModelSpec(text=text, path=path, args=tuple(args), kwargs=tuple(kwargs))


def _value(node: ast.expr, text: str, name: str) -> Any:
    """A literal argument, or a nested allowed class (a :class:`ModelSpec`)."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _model(node, text)
    if isinstance(node, ast.Call | ast.Attribute | ast.Name | ast.BinOp):
        path = _dotted(node.func) if isinstance(node, ast.Call) else _dotted(node)
        if path is not None and path.startswith("river."):
            return _model(node, text)
        shown = path or ast.unparse(node)
        raise ValueError(f"{name}: arguments must be literals or allowed classes, got {shown}")
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ValueError(f"{name}: arguments must be literals, got {ast.unparse(node)}") from None


def _resolve(path: str) -> type:
    """The class a path names, if its module is allowed and it is a public River class there."""
    module_name, _, name = path.rpartition(".")
    if not module_name:
        raise ValueError(
            f"expected {HELIOS} or a class path such as river.anomaly.HalfSpaceTrees, got {path}"
        )
    if module_name not in ALLOWED_MODULES:
        raise ValueError(
            f"{path}: module {module_name} is not allowed (allowed: {', '.join(sorted(ALLOWED_MODULES))})"
        )
    module = importlib.import_module(module_name)
    public = getattr(module, "__all__", ())
    cls = getattr(module, name, None) if name in public else None
    if not inspect.isclass(cls):
        raise ValueError(f"{path}: {module_name} has no public class {name!r}")
    return cls


def build(spec: ModelSpec) -> Any:
    """Instantiate a River spec; constructor errors become ``ValueError`` naming the class."""
    if spec.is_helios:
        raise ValueError("build() makes River models; Helios' own are made by the pipeline")
    if spec.parts:
        from river import compose

        return compose.Pipeline(*(build(p) for p in spec.parts))
    cls = _resolve(spec.path)
    if spec.path == "river.time_series.HoltWinters":
        from models.river_adapters import SafeHoltWinters

        cls = SafeHoltWinters
    args = [build(a) if isinstance(a, ModelSpec) else a for a in spec.args]
    kwargs = {k: build(v) if isinstance(v, ModelSpec) else v for k, v in spec.kwargs}
    try:
        return cls(*args, **kwargs)
    except (TypeError, ValueError, ZeroDivisionError) as exc:
        raise ValueError(f"{spec.path}: {exc}") from None


def forecaster_spec(text: str) -> ModelSpec:
    """Parse and check a ``HELIOS_FORECASTER`` value: Helios' own or a River forecaster.

    Examples
    --------
    >>> forecaster_spec("river.anomaly.HalfSpaceTrees()")
    Traceback (most recent call last):
    ...
    ValueError: river.anomaly.HalfSpaceTrees is not a River forecaster (river.time_series.base.Forecaster)
    """
    from river.time_series.base import Forecaster

    spec = parse_spec(text)
    if spec.is_helios:
        _check_helios_options(spec, "forecaster")
        return spec
    model = build(spec)
    if not isinstance(model, Forecaster):
        raise ValueError(f"{spec.path} is not a River forecaster (river.time_series.base.Forecaster)")
    try:  # fail at start-up, not on the stream's first sample
        for y in (0.5, 0.6, 0.4):
            model.learn_one(y)
        model.forecast(2)
    except Exception as exc:  # any failure of a third-party model is a bad setting
        raise ValueError(f"{spec.path} fails on its first samples: {type(exc).__name__}: {exc}") from None
    return spec


def detector_spec(text: str) -> ModelSpec:
    """Parse and check a ``HELIOS_DETECTOR`` value: Helios' own or a River anomaly detector.

    Examples
    --------
    >>> detector_spec("river.preprocessing.MinMaxScaler() | river.anomaly.HalfSpaceTrees(n_trees=5)").path
    'river.compose.Pipeline'
    """
    from river import base

    spec = parse_spec(text)
    if spec.is_helios:
        _check_helios_options(spec, "detector")
        return spec
    model = build(spec)
    if not isinstance(model, base.AnomalyDetector | base.SupervisedAnomalyDetector):
        raise ValueError(f"{spec.path} is not a River anomaly detector (river.base.AnomalyDetector)")
    try:  # fail at start-up, not on the stream's first sample
        for v in (0.5, 0.6, 0.4):
            if isinstance(model, base.SupervisedAnomalyDetector):
                model.score_one({}, v)
                model.learn_one({}, v)
            else:
                model.score_one({"x": v})
                model.learn_one({"x": v})
    except Exception as exc:  # any failure of a third-party model is a bad setting
        raise ValueError(f"{spec.path} fails on its first samples: {type(exc).__name__}: {exc}") from None
    return spec


#: Arguments of Helios' own models that the settings decide, so a model value may not set them.
_SET_BY_SETTINGS = {
    "forecaster": {"step_seconds": "HELIOS_SCORING_INTERVAL", "level": "HELIOS_RISK_LEVEL"},
    "detector": {"threshold": "HELIOS_ANOMALY_THRESHOLD", "features": "the pipeline"},
}


def _check_helios_options(spec: ModelSpec, kind: str) -> None:
    from models.anomaly import StreamingDetector
    from models.forecast import OnlineForecaster

    cls = OnlineForecaster if kind == "forecaster" else StreamingDetector
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    for name in spec.options:
        if name in _SET_BY_SETTINGS[kind]:
            raise ValueError(f"helios({name}=...): {name} is set by {_SET_BY_SETTINGS[kind][name]}")
        if name not in accepted:
            raise ValueError(f"helios({name}=...): the {kind} has no argument {name!r}")


def describe(model: Any) -> tuple[str, dict[str, Any]]:
    """The class path and the constructor parameters of a model, as ``/models`` reports them.

    Examples
    --------
    >>> from models.forecast import OnlineForecaster
    >>> name, params = describe(OnlineForecaster(step_seconds=60))
    >>> name, params["step_seconds"], params["calibrated_steps"]
    ('models.forecast.OnlineForecaster', 60, (1, 5, 15, 30, 60))
    """
    inner = getattr(model, "model", model)  # the adapters keep the River model as .model
    cls = type(inner)
    get = getattr(inner, "_get_params", None)
    if callable(get):
        params: Mapping[str, Any] = get()
    else:  # a Helios model that is not (yet) a River estimator: its parameter object
        own = getattr(getattr(inner, "params", None), "to_dict", None)
        params = own() if callable(own) else {}
    return f"{cls.__module__}.{cls.__qualname__}", {k: _plain(v) for k, v in params.items()}


def _plain(value: Any) -> Any:
    """JSON-friendly parameter values: nested River estimators as ``(class path, params)`` dicts."""
    if isinstance(value, tuple) and len(value) == 2 and inspect.isclass(value[0]):
        cls, params = value
        return {
            "class": f"{cls.__module__}.{cls.__qualname__}",
            "params": {k: _plain(v) for k, v in params.items()},
        }
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, int | float | str | bool | type(None) | tuple):
        return value
    return repr(value)


def make_forecaster(spec: ModelSpec, step_seconds: int, level: float, calibrated_steps: Sequence[int]) -> Any:
    """The forecaster a spec names: :class:`~models.forecast.OnlineForecaster` for ``helios``, else a
    :class:`~models.river_adapters.RiverForecaster` with the conformal band.

    Examples
    --------
    >>> type(make_forecaster(parse_spec("helios"), 60, 0.9, (1, 5))).__name__
    'OnlineForecaster'
    >>> f = make_forecaster(parse_spec("river.time_series.SNARIMAX(p=1, d=0, q=0)"), 60, 0.9, (1, 5))
    >>> type(f).__name__, type(f.model).__name__
    ('RiverForecaster', 'SNARIMAX')
    """
    if spec.is_helios:
        from models.forecast import OnlineForecaster

        return OnlineForecaster(
            step_seconds=step_seconds, level=level, calibrated_steps=calibrated_steps, **spec.options
        )
    from models.river_adapters import RiverForecaster

    return RiverForecaster(build(spec), spec.text, step_seconds, level, calibrated_steps)


def make_detector(spec: ModelSpec, features: Sequence[str], threshold: float, season_length: int) -> Any:
    """The detector a spec names: :class:`~models.anomaly.StreamingDetector` for ``helios``, else a
    :class:`~models.river_adapters.RiverDetector` (``season_length`` is Helios' own's daily profile).

    Examples
    --------
    >>> d = make_detector(parse_spec("river.anomaly.GaussianScorer()"), ("cpu_utilization",), 2.5, 288)
    >>> type(d).__name__, d.threshold
    ('RiverDetector', 2.5)
    """
    if spec.is_helios:
        from models.anomaly import StreamingDetector

        options = {"season_length": season_length, **spec.options}
        return StreamingDetector(features=tuple(features), threshold=threshold, **options)
    from models.river_adapters import RiverDetector

    return RiverDetector(build(spec), spec.text, features=features, threshold=threshold)


def restore_forecaster(d: Mapping[str, Any]) -> Any:
    """A forecaster from its ``to_dict``: Helios' own state, or a River model's name (relearned)."""
    if "river_forecaster" in d:
        from models.river_adapters import RiverForecaster

        return RiverForecaster.from_dict(d)
    from models.forecast import OnlineForecaster

    return OnlineForecaster.from_dict(dict(d))


def restore_detector(d: Mapping[str, Any]) -> Any:
    """A detector from its ``to_dict``: Helios' own state, or a River model's name (relearned)."""
    if "river_detector" in d:
        from models.river_adapters import RiverDetector

        return RiverDetector.from_dict(d)
    from models.anomaly import StreamingDetector

    return StreamingDetector.from_dict(d)
