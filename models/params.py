"""Model parameters declared once, in a frozen dataclass shared by every instance built alike.

The stream keeps two forecasters and a detector per tracked deployment, thousands of instances built
from a handful of parameter sets. Each model class therefore keeps its arguments, and everything
derived from them, in one frozen ``params`` object that every instance built with the same arguments
shares, and holds only its learned state itself.

The parameter dataclass is the declaration: its fields are the arguments with their types and
defaults, its ``__post_init__`` validates them and derives the rest. From it come

* the shared object (:func:`shared`: equal arguments give the same object);
* the attributes of the model (:func:`reads_params` installs a read-only :class:`Param` per argument,
  which is also how River's ``_get_params`` and ``clone`` read them);
* the saved form (:func:`arguments`, the ``params`` of a model's ``to_dict``).

River reads an estimator's parameters from its ``__init__`` signature, and a type checker checks calls
against it, so the model's ``__init__`` keeps an explicit signature; :func:`signature_mismatches`
(run by the unit tests) keeps it in step with the dataclass.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, Protocol, TypeVar, overload

__all__ = ["Param", "arguments", "given", "reads_params", "shared", "signature_mismatches"]

T = TypeVar("T")
M = TypeVar("M", bound=type)


class _HasParams(Protocol):
    @property
    def params(self) -> Any: ...


class Param(Generic[T]):
    """Class attribute that reads the instance's ``params.<same name>``; assigning to it fails.

    Examples
    --------
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class P:
    ...     level: float
    >>> class Model:
    ...     __slots__ = ("params",)
    ...     level: Param[float] = Param()
    ...     def __init__(self, params: P) -> None:
    ...         self.params = params
    >>> Model(P(0.9)).level
    0.9
    """

    __slots__ = ("_name",)

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, obj: None, owner: type) -> Param[T]: ...

    @overload
    def __get__(self, obj: _HasParams, owner: type | None = None) -> T: ...

    def __get__(self, obj: _HasParams | None, owner: type | None = None) -> Param[T] | T:
        if obj is None:
            return self
        value: T = getattr(obj.params, self._name)
        return value


def arguments(params: Any) -> dict[str, Any]:
    """The constructor arguments of a parameter dataclass, JSON-safe: tuples become lists, derived fields
    (``init=False``) are left out.

    Examples
    --------
    >>> @dataclasses.dataclass(frozen=True)
    ... class P:
    ...     level: float
    ...     steps: tuple[int, ...]
    ...     pairs: tuple[tuple[float, bool], ...]
    ...     width: int = dataclasses.field(init=False, default=3)
    >>> arguments(P(0.9, (1, 5), ((0.5, True),)))
    {'level': 0.9, 'steps': [1, 5], 'pairs': [[0.5, True]]}
    """

    def plain(value: Any) -> Any:
        return [plain(v) for v in value] if isinstance(value, tuple) else value

    return {f.name: plain(getattr(params, f.name)) for f in dataclasses.fields(params) if f.init}


def _hashable(value: Any) -> Any:
    """Sequences (lists from JSON, any iterable) as tuples, recursively; a lone string stays a string, to
    be rejected by a validator rather than read as its characters."""
    if type(value) in _PLAIN:
        return value
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        return value
    return tuple(_hashable(v) for v in value)


_PLAIN = frozenset({int, float, bool, str, type(None)})
_PLAIN_OR_TUPLE = _PLAIN | {tuple}


@functools.cache
def _init_fields(cls: type) -> tuple[tuple[str, ...], tuple[dataclasses.Field[Any], ...]]:
    fields = tuple(f for f in dataclasses.fields(cls) if f.init)
    return tuple(f.name for f in fields), fields


# typed: arguments equal across types (1 and 1.0, 1 and True) are kept as given, so they must not share
# an entry. Keyed by the class, so each parameter class has its own entries.
@functools.lru_cache(maxsize=128, typed=True)
def _cached(cls: type[T], *values: Any) -> T:
    return cls(*values)


def shared(cls: type[T], values: Mapping[str, Any]) -> T:
    """The parameter object ``cls(**values)``, shared: equal arguments give the same object.

    Sequences become tuples first (a list and a tuple are the same argument); missing arguments take
    the field's default.

    Examples
    --------
    >>> @dataclasses.dataclass(frozen=True)
    ... class P:
    ...     level: float = 0.9
    ...     steps: tuple[int, ...] = (1,)
    >>> a = shared(P, {"steps": [1, 5]})
    >>> a, a is shared(P, {"level": 0.9, "steps": (1, 5)}), a is shared(P, {"level": 1, "steps": (1, 5)})
    (P(level=0.9, steps=(1, 5)), True, False)
    """
    names, fields = _init_fields(cls)  # type: ignore[arg-type]  # a class is hashable
    args = list(values.values())
    if tuple(values) != names or not _PLAIN_OR_TUPLE.issuperset(map(type, args)):
        # Not every argument in order as a model's __init__ passes them: fill in and convert.
        if not values.keys() <= set(names):
            raise TypeError(f"{cls.__name__} got unexpected arguments {sorted(set(values) - set(names))}")
        args = []
        for f in fields:
            if f.name in values:
                args.append(_hashable(values[f.name]))
            elif f.default is not dataclasses.MISSING:
                args.append(f.default)
            else:
                raise TypeError(f"{cls.__name__} is missing the argument {f.name!r}")
    try:
        hash(tuple(args))
    except TypeError:  # a tuple holding a list
        args = [_hashable(v) for v in args]
    made: T = _cached(cls, *args)  # type: ignore[arg-type]  # a class is hashable
    return made


def given(local_names: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of an ``__init__`` from its ``locals()``, taken first thing (``self`` left out).

    >>> def f(self, a, b=2):
    ...     return given(locals())
    >>> f(None, 1)
    {'a': 1, 'b': 2}
    """
    out = dict(local_names)
    del out["self"]
    out.pop("__class__", None)
    return out


def reads_params(params_cls: type) -> Callable[[M], M]:
    """Class decorator: a read-only :class:`Param` attribute for every field of ``params_cls``.

    The model class keeps its parameters in ``self.params``; the attributes make them readable under
    their own names (``detector.threshold``), as River expects. An attribute the class defines itself is
    left alone.
    """

    def install(model_cls: M) -> M:
        for f in dataclasses.fields(params_cls):
            if f.name not in vars(model_cls):
                attr: Param[Any] = Param()
                attr.__set_name__(model_cls, f.name)
                setattr(model_cls, f.name, attr)
        return model_cls

    return install


def signature_mismatches(model_cls: type, params_cls: type) -> list[str]:
    """How ``model_cls.__init__``'s signature differs from the fields of ``params_cls`` (empty: none).

    Names, order and defaults must agree, so the signature River and the type checker read cannot drift
    from the declaration.

    Examples
    --------
    >>> @dataclasses.dataclass(frozen=True)
    ... class P:
    ...     level: float = 0.9
    >>> class Model:
    ...     def __init__(self, level: float = 0.8) -> None: ...
    >>> signature_mismatches(Model, P)
    ['level: default 0.8 in the signature, 0.9 in P']
    """
    fields = [f for f in dataclasses.fields(params_cls) if f.init]
    parameters = list(inspect.signature(model_cls).parameters.values())
    out = []
    names = [p.name for p in parameters]
    if names != [f.name for f in fields]:
        out.append(f"arguments {names} in the signature, {[f.name for f in fields]} in {params_cls.__name__}")
    for p, f in zip(parameters, fields, strict=False):
        default = None if p.default is inspect.Parameter.empty else p.default
        declared = None if f.default is dataclasses.MISSING else f.default
        same = _hashable(default) == declared and type(_hashable(default)) is type(declared)
        if p.name == f.name and not same:
            name = params_cls.__name__
            out.append(f"{p.name}: default {default!r} in the signature, {declared!r} in {name}")
    return out
