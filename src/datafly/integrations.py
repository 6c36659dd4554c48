"""The integrations in force: those of the config file plus those managed in the UI."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from datafly.config import Integration
from datafly.processing.routing import Route


class IntegrationSet:
    def __init__(self, configured: Iterable[Integration] = ()) -> None:
        self._items: dict[str, Integration] = {i.id: i for i in configured}
        self._routes: list[Route] | None = None
        self._listeners: list[Callable[[], None]] = []

    def all(self) -> list[Integration]:
        return list(self._items.values())

    def get(self, integration_id: str) -> Integration | None:
        return self._items.get(integration_id)

    def on_change(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def put(self, integration: Integration) -> None:
        self._items[integration.id] = integration
        self._changed()

    def remove(self, integration_id: str) -> None:
        if self._items.pop(integration_id, None) is not None:
            self._changed()

    def _changed(self) -> None:
        self._routes = None
        for listener in self._listeners:
            listener()

    def routes(self) -> list[Route]:
        if self._routes is None:
            self._routes = [
                Route(
                    integration_id=i.id,
                    mapping=i.mapping(),
                    sources=frozenset(i.sources) if i.sources is not None else None,
                    consent=tuple(i.consent),
                )
                for i in self._items.values()
                if i.enabled
            ]
        return self._routes
