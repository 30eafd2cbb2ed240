"""One registry idiom for everything a run can name: models, losses, backbones, metrics, worlds, axes.

A :class:`Registry` is an ordered, read-only mapping from a name to an entry, with the one error
message the project uses for an unknown name (``loss: unknown 'huber2'; allowed: mse, pcc, ...``).
Entries are added where they are defined, as timm's ``register_model`` does, either directly
(``LOSSES.register("mse", GeneLoss(...))``) or as a class decorator (``@MODELS.register("mlp")``).
The run configuration's allowed values, the grid's axes, the params files and the book's tables all
read the registry; nothing else keeps a list of the names.

This module imports nothing heavy, so a registry can be declared by light modules (the run
configuration) without pulling in torch.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """Ordered name -> entry mapping; ``kind`` names what the entries are in error messages.

    ``registry[name]`` and ``registry.get(name)`` both raise ``ValueError`` naming the allowed values
    for an unknown name (a mapping's ``get`` returning None would let a typo through).
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    # --- adding ----------------------------------------------------------------------------------
    def register(self, name: str, entry: T | None = None) -> Any:
        """Add ``entry`` under ``name`` and return it; without ``entry``, a decorator that registers
        the decorated object. A name registered twice to a different entry is an error (two owners)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind}: a name must be a non-empty string, got {name!r}")
        if entry is None:
            def decorate(obj: T) -> T:
                self.register(name, obj)
                return obj
            return decorate
        if name in self._entries and self._entries[name] is not entry:
            raise ValueError(f"{self.kind} {name!r} is already registered to {self._entries[name]!r}")
        self._entries[name] = entry
        return entry

    # --- reading ---------------------------------------------------------------------------------
    def get(self, name: str, default: Any = None) -> T:  # type: ignore[override]
        """The entry of ``name``; an unknown name raises ``ValueError`` naming the allowed ones
        (``default`` is accepted for the Mapping signature and never returned)."""
        return self[name]

    def __getitem__(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ValueError(self.unknown(name)) from None

    def unknown(self, name: Any) -> str:
        """The error message for an unknown ``name``."""
        return f"{self.kind}: unknown {name!r}; allowed: {', '.join(self._entries)}"

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"

    def table(self, columns: Mapping[str, Callable[[T], Any]] | None = None):
        """pandas DataFrame, one row per entry: ``name`` plus ``columns`` (column -> function of the
        entry); without ``columns``, the entry's public dataclass fields."""
        import pandas as pd

        rows = []
        for name, entry in self._entries.items():
            if columns is None:
                fields = getattr(entry, "__dataclass_fields__", {})
                row = {k: getattr(entry, k) for k in fields if not k.startswith("_")}
            else:
                row = {k: f(entry) for k, f in columns.items()}
            rows.append({"name": name, **row})
        return pd.DataFrame(rows)
