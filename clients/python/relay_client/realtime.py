"""The socket.io connection of this device (docs/realtime.md): authenticated with the
device-bound session token, reconnecting on its own (with a fresh login when the relay says
the session ended, in an acknowledgement or by closing the socket with ``session_ended``),
events handed to handlers one at a time in arrival order, and client events sent with an
acknowledgement that is either a result or a RelayApiError."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import socketio

from relay_client.errors import RelayApiError
from relay_client.http import SESSION_ENDED, RelayHttp

log = logging.getLogger(__name__)
Handler = Callable[[dict[str, Any]], Awaitable[None]]


class ConnectionLost(RelayApiError):
    """The socket closed (or did not come back) before the relay answered an event."""

    def __init__(self, message: str) -> None:
        super().__init__(0, "connection_lost", message)


def refusal_code(data: Any) -> str | None:
    """The code of a refused connection: the refusal's data is ``{"code": ...}`` (docs/realtime.md)."""
    inner = data.get("data") if isinstance(data, dict) else None
    if isinstance(inner, dict) and isinstance(inner.get("code"), str):
        return str(inner["code"])
    return None


class Realtime:
    def __init__(self, http: RelayHttp, *, request_timeout: float = 30, reconnection: bool = True) -> None:
        self._http = http
        self._timeout = request_timeout
        self._client = socketio.AsyncClient(reconnection=reconnection, reconnection_delay=0.5,
                                            reconnection_delay_max=10, logger=False, engineio_logger=False)
        self._handlers: dict[str, list[Handler]] = {}
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._renewal: asyncio.Future[str] | None = None
        self._resumption: asyncio.Future[None] | None = None
        self.refusal: str | None = None
        self._connecting = False
        self._socket_token: str | None = None
        self._emitting = asyncio.Lock()
        self._resuming = asyncio.Lock()
        self._pending: set[asyncio.Future[Any]] = set()
        self._client.on("connect_error", self._on_connect_error)
        self._client.on("disconnect", self._on_disconnect)
        self._client.on("session_ended", self._on_session_ended)
        self._client.on("*", self._on_any)

    @property
    def connected(self) -> bool:
        return bool(self._client.connected)

    def on(self, event: str, handler: Handler) -> None:
        """Call ``handler(payload)`` for each ``event``; handlers run one at a time, in order."""
        self._handlers.setdefault(event, []).append(handler)

    async def connect(self) -> None:
        """Connect with the current token; a refusal because the session ended logs in again once."""
        if self._worker is None:
            self._worker = asyncio.create_task(self._dispatch())
        self._connecting = True
        try:
            for attempt in (1, 2):
                self.refusal = None
                try:
                    await self._client.connect(self._http.base_url, auth=self._auth, transports=["websocket"],
                                               wait_timeout=self._timeout)
                    return
                except socketio.exceptions.ConnectionError as error:
                    if attempt == 1 and self.refusal in SESSION_ENDED and self._http.renew is not None:
                        await self._http.renew(self._http.token or "")
                        continue
                    raise RelayApiError(401 if self.refusal else 0, self.refusal or "connection_failed",
                                        str(error)) from None
        finally:
            self._connecting = False

    async def disconnect(self) -> None:
        """Disconnect and stop reconnecting. Events received but not yet handled are dropped
        (unacknowledged messages are pushed again on the next connection)."""
        resumption, self._resumption = self._resumption, None
        if resumption is not None:
            resumption.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await resumption
        with contextlib.suppress(Exception):
            await self._client.disconnect()
        worker, self._worker = self._worker, None
        if worker is not None and worker is not asyncio.current_task():
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    async def call(self, event: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send a client event and wait for its acknowledgement's ``result``. When the relay
        says the socket's session ended, log in again, reconnect, and send it once more."""
        for attempt in (1, 2):
            token = self._socket_token
            try:
                answer = await self._emit(event, payload)
            except ConnectionLost:
                if attempt == 2:
                    raise
                await self._until_connected()
                continue
            if answer.get("ok"):
                return dict(answer.get("result") or {})
            error = answer.get("error") or {}
            code = str(error.get("code", "unknown_error"))
            if attempt == 1 and code in SESSION_ENDED and self._http.renew is not None:
                await self._resume_session(token)
                continue
            raise RelayApiError(0, code, str(error.get("message", "")), error.get("details"))
        raise AssertionError("unreachable")

    async def _emit(self, event: str, payload: dict[str, Any]) -> dict[str, Any]:
        """One emit at a time (a binary payload goes out as several packets), then its answer."""
        answered: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def on_answer(*args: Any) -> None:
            if not answered.done():
                answered.set_result(args[0] if args else None)

        async with self._emitting:
            await self._client.emit(event, payload, callback=on_answer)
        self._pending.add(answered)
        try:
            answer = await asyncio.wait_for(answered, self._timeout)
        except TimeoutError:
            raise RelayApiError(0, "timeout", f"the relay did not answer {event} in time") from None
        finally:
            self._pending.discard(answered)
        if not isinstance(answer, dict):
            raise RelayApiError(0, "invalid_answer", f"the relay answered {event} without a result")
        return answer

    async def _until_connected(self) -> None:
        """Wait for a reconnection under way (ours or python-socketio's), within the timeout."""
        async with self._resuming:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self._timeout
            while not self.connected and loop.time() < deadline:
                await asyncio.sleep(0.05)
        if not self.connected:
            raise ConnectionLost("the socket did not reconnect in time")

    async def _on_disconnect(self, *reason: Any) -> None:
        for answer in self._pending:
            if not answer.done():
                answer.set_exception(ConnectionLost("the socket closed before the relay answered"))

    async def _on_session_ended(self, payload: Any) -> None:
        """The relay is closing the socket because its session ended: handlers see the event, and
        a session that can be renewed (not a disabled account's) is, with a reconnection."""
        payload = payload if isinstance(payload, dict) else {}
        self._queue.put_nowait(("session_ended", payload))
        if payload.get("code") in SESSION_ENDED and self._http.renew is not None and self._resumption is None:
            self._resumption = asyncio.ensure_future(self._resume_after_end(self._socket_token))

    async def _resume_after_end(self, ended_token: str | None) -> None:
        try:
            await self._resume_session(ended_token)
        except Exception:
            log.exception("logging in again after the session ended failed")
        finally:
            self._resumption = None

    async def _resume_session(self, ended_token: str | None) -> None:
        """Log in again and reconnect with the new token, once for every caller that saw the end."""
        async with self._resuming:
            if self.connected and self._socket_token != ended_token:
                return
            assert self._http.renew is not None
            await self._http.renew(ended_token or "")
            await self._client.disconnect()
            await self.connect()

    async def _auth(self) -> dict[str, str]:
        if self._renewal is not None:
            with contextlib.suppress(Exception):
                await self._renewal
            self._renewal = None
        self._socket_token = self._http.token
        return {"token": self._http.token or ""}

    async def _on_connect_error(self, data: Any) -> None:
        self.refusal = refusal_code(data)
        renew = self._http.renew
        if not self._connecting and self.refusal in SESSION_ENDED and renew is not None and self._renewal is None:
            self._renewal = asyncio.ensure_future(renew(self._http.token or ""))

    async def _on_any(self, event: str, *args: Any) -> None:
        payload = args[0] if args and isinstance(args[0], dict) else {}
        self._queue.put_nowait((event, payload))

    async def _dispatch(self) -> None:
        while True:
            event, payload = await self._queue.get()
            try:
                for handler in self._handlers.get(event, []):
                    try:
                        await handler(payload)
                    except Exception:
                        log.exception("a handler of %s failed", event)
            finally:
                self._queue.task_done()
