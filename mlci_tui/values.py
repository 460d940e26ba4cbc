"""Value objects by their `__slots__`, as `@dataclass` makes them, for the modules the commit
hooks import: `dataclasses` imports `inspect` (with `ast`, `dis`, `tokenize`: ~10 ms), more than
a hook's whole import budget for mlci's own modules (docs/hooks.md)."""

from __future__ import annotations


class Plain:
    """A value object by its `__slots__`, as `@dataclass` makes one: the subclass lists its fields
    in `__slots__` and writes `__init__`; equality and repr go by them (and, as a dataclass with
    `eq`, it is unhashable). Not a dataclass: `dataclasses` imports `inspect` (with `ast`, `dis`,
    `tokenize`: ~10 ms), more than a hook's whole import budget for mlci's own modules."""

    __slots__: tuple[str, ...] = ()  # a class with __eq__ and no __hash__ is unhashable, as a dataclass

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._fields() == other._fields()

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{self.__class__.__qualname__}({inner})"


class Frozen(Plain):
    """A `Plain` value that cannot change, as `@dataclass(frozen=True)`: hashable, assignment
    raises, pickled by its fields (`__init__` takes them in `__slots__` order)."""

    __slots__: tuple[str, ...] = ()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}")

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:
        return self.__class__, self._fields()
