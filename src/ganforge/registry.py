"""One small registry per extension kind (models, datasets, losses, extractors, ...).

Names are looked up at config time so an unknown name fails before any work starts, with the list of
valid names in the message.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object map with one-line summaries and helpful lookup errors."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._summaries: dict[str, str] = {}

    def register(self, name: str, summary: str = "") -> Callable[[T], T]:
        def deco(obj: T) -> T:
            self.add(name, obj, summary)
            return obj

        return deco

    def add(self, name: str, obj: T, summary: str = "") -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = obj
        self._summaries[name] = summary or (getattr(obj, "__doc__", None) or "").strip().split("\n")[0]

    def get(self, name: str) -> T:
        if name not in self._items:
            hint = difflib.get_close_matches(name, self._items, n=1)
            did = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(f"unknown {self.kind} {name!r}{did}; valid: {', '.join(sorted(self._items))}")
        return self._items[name]

    def summary(self, name: str) -> str:
        return self._summaries[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
