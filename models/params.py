"""Read-only model attributes served from a parameter object shared by many instances.

The stream keeps two forecasters and a detector per tracked deployment, thousands of instances built
from a handful of parameter sets. Each model class therefore keeps its arguments, and everything
derived from them, in one frozen ``params`` object that every instance built with the same arguments
shares, and holds only its learned state itself. :class:`Param` keeps the familiar attribute names
(``forecaster.level``, ``detector.threshold``) working on the instances.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Generic, Protocol, TypeVar, overload

__all__ = ["Param", "arguments"]

T = TypeVar("T")


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
