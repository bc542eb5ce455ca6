"""The router: a registry from message type, event type and menu key to a handler."""
from __future__ import annotations

from sqlalchemy.orm import Session

from handlers.messages import Handler, Inbound, Reply, run_planned


class Router:
    """Finds the handler for an Inbound; the most specific registration wins.

    CLICK events look up the menu key first, then the "click" event, then the fallback.
    """

    def __init__(self) -> None:
        self._messages: dict[str, Handler] = {}
        self._events: dict[str, Handler] = {}
        self._clicks: dict[str, Handler] = {}
        self._fallback: Handler | None = None

    def on_message(self, msg_type: str, handler: Handler) -> None:
        self._put(self._messages, msg_type.lower(), handler, "message")

    def on_event(self, event: str, handler: Handler) -> None:
        self._put(self._events, event.lower(), handler, "event")

    def on_click(self, key: str, handler: Handler) -> None:
        self._put(self._clicks, key, handler, "menu key")

    def fallback(self, handler: Handler) -> None:
        self._fallback = handler

    @staticmethod
    def _put(table: dict[str, Handler], key: str, handler: Handler, what: str) -> None:
        # Two flows claiming one key is a wiring mistake: fail at start-up, not at random.
        if key in table:
            raise ValueError(f"{what} {key!r} already has a handler")
        table[key] = handler

    @property
    def click_keys(self) -> frozenset[str]:
        return frozenset(self._clicks)

    def resolve(self, inbound: Inbound) -> Handler | None:
        if inbound.msg_type != "event":
            return self._messages.get(inbound.msg_type, self._fallback)
        if inbound.event == "click" and inbound.event_key in self._clicks:
            return self._clicks[inbound.event_key]
        return self._events.get(inbound.event or "", self._fallback)

    def dispatch(self, session: Session, inbound: Inbound) -> Reply | None:
        handler = self.resolve(inbound)
        return run_planned(session, handler(session, inbound)) if handler else None
