"""A minimal Socket.IO v5 client over a raw Engine.IO v4 websocket, light enough to hold a thousand
connections in one process (python-socketio's AsyncClient is not). The benchmark drives the bare
forwarder and the relay with this same client.

It speaks only what the benchmark needs: the default namespace, events with and without binary
attachments, acknowledgements both ways, and answering the server's pings.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from itertools import count
from typing import Any

import aiohttp

OPEN, CLOSE, PING, PONG, MESSAGE = "0", "1", "2", "3", "4"
CONNECT, DISCONNECT, EVENT, ACK, CONNECT_ERROR, BINARY_EVENT, BINARY_ACK = "0123456"

EventHandler = Callable[[str, Any, float], None]


class SocketRefused(Exception):
    """The server refused the Socket.IO connection; ``data`` is its refusal payload."""

    def __init__(self, data: Any) -> None:
        super().__init__(f"connection refused: {data!r}")
        self.data = data


class SocketClosed(Exception):
    """The connection ended before an awaited answer arrived."""


def _with_placeholders(value: Any, attachments: list[bytes]) -> Any:
    if isinstance(value, bytes):
        attachments.append(value)
        return {"_placeholder": True, "num": len(attachments) - 1}
    if isinstance(value, dict):
        return {key: _with_placeholders(item, attachments) for key, item in value.items()}
    if isinstance(value, list):
        return [_with_placeholders(item, attachments) for item in value]
    return value


def _filled(value: Any, attachments: list[bytes]) -> Any:
    if isinstance(value, dict):
        if value.get("_placeholder") is True and isinstance(value.get("num"), int):
            return attachments[value["num"]]
        return {key: _filled(item, attachments) for key, item in value.items()}
    if isinstance(value, list):
        return [_filled(item, attachments) for item in value]
    return value


class DeviceSocket:
    """One Socket.IO connection. Server events go to ``on_event(name, data, received_at)`` where
    ``received_at`` is ``time.perf_counter()`` when the event's last frame arrived."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, on_event: EventHandler) -> None:
        self._ws = ws
        self._on_event = on_event
        self._ack_ids = count()
        self._acks: dict[int, asyncio.Future[Any]] = {}
        self._connected: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._partial: tuple[str, int | None, Any, int] | None = None
        self._attachments: list[bytes] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, http: aiohttp.ClientSession, url: str, auth: dict[str, Any], on_event: EventHandler,
                      *, timeout: float = 10.0) -> DeviceSocket:
        """Open the websocket at ``url``'s /socket.io/ and join the default namespace with ``auth``."""
        endpoint = url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
        ws = await http.ws_connect(endpoint, timeout=aiohttp.ClientWSTimeout(ws_close=timeout), max_msg_size=0,
                                   autoping=True)
        socket = cls(ws, on_event)
        try:
            async with asyncio.timeout(timeout):
                await socket._connected
        except BaseException:
            await socket.close()
            raise
        socket._connected = asyncio.get_running_loop().create_future()
        await ws.send_str(MESSAGE + CONNECT + json.dumps(auth))
        try:
            async with asyncio.timeout(timeout):
                await socket._connected
        except BaseException:
            await socket.close()
            raise
        return socket

    async def emit(self, event: str, data: Any) -> asyncio.Future[Any]:
        """Send ``event`` asking for an acknowledgement; returns the future of its first argument.
        Bytes anywhere in ``data`` travel as binary attachments."""
        ack_id = next(self._ack_ids)
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._acks[ack_id] = answer
        attachments: list[bytes] = []
        body = json.dumps([event, _with_placeholders(data, attachments)], separators=(",", ":"))
        if attachments:
            await self._ws.send_str(f"{MESSAGE}{BINARY_EVENT}{len(attachments)}-{ack_id}{body}")
            for attachment in attachments:
                await self._ws.send_bytes(attachment)
        else:
            await self._ws.send_str(f"{MESSAGE}{EVENT}{ack_id}{body}")
        return answer

    async def close(self) -> None:
        if not self._ws.closed:
            try:
                await self._ws.send_str(MESSAGE + DISCONNECT)
            except ConnectionError:
                pass
            await self._ws.close()
        await asyncio.gather(self._reader, return_exceptions=True)

    async def _read(self) -> None:
        try:
            async for frame in self._ws:
                if frame.type is aiohttp.WSMsgType.TEXT:
                    await self._text(frame.data)
                elif frame.type is aiohttp.WSMsgType.BINARY:
                    await self._binary(frame.data)
        finally:
            self._fail_waiters(SocketClosed("the connection closed"))

    async def _text(self, text: str) -> None:
        kind = text[:1]
        if kind == PING:
            await self._ws.send_str(PONG + text[1:])
        elif kind == OPEN and not self._connected.done():
            self._connected.set_result(json.loads(text[1:]))
        elif kind == MESSAGE:
            await self._packet(text[1:])
        elif kind == CLOSE:
            await self._ws.close()

    async def _packet(self, text: str) -> None:
        kind, at = text[:1], 1
        attachments = 0
        if kind in (BINARY_EVENT, BINARY_ACK):
            dash = text.index("-", at)
            attachments, at = int(text[at:dash]), dash + 1
        if text.startswith("/", at):
            at = text.index(",", at) + 1
        digits = at
        while digits < len(text) and text[digits].isdigit():
            digits += 1
        ack_id = int(text[at:digits]) if digits > at else None
        data = json.loads(text[digits:]) if digits < len(text) else None
        if kind == CONNECT and not self._connected.done():
            self._connected.set_result(data)
        elif kind == CONNECT_ERROR and not self._connected.done():
            self._connected.set_exception(SocketRefused(data.get("data") if isinstance(data, dict) else data))
        elif kind in (EVENT, ACK):
            await self._dispatch(kind, ack_id, data, time.perf_counter())
        elif kind in (BINARY_EVENT, BINARY_ACK):
            self._partial, self._attachments = (kind, ack_id, data, attachments), []
        elif kind == DISCONNECT:
            await self._ws.close()

    async def _binary(self, data: bytes) -> None:
        if self._partial is None:
            return
        self._attachments.append(data)
        kind, ack_id, body, expected = self._partial
        if len(self._attachments) == expected:
            self._partial = None
            await self._dispatch(kind, ack_id, _filled(body, self._attachments), time.perf_counter())

    async def _dispatch(self, kind: str, ack_id: int | None, data: Any, received_at: float) -> None:
        if kind in (ACK, BINARY_ACK):
            answer = self._acks.pop(ack_id, None) if ack_id is not None else None
            if answer is not None and not answer.done():
                answer.set_result(data[0] if data else None)
            return
        self._on_event(data[0], data[1] if len(data) > 1 else None, received_at)
        if ack_id is not None:
            await self._ws.send_str(f"{MESSAGE}{ACK}{ack_id}[]")

    def _fail_waiters(self, error: Exception) -> None:
        if not self._connected.done():
            self._connected.set_exception(error)
        for answer in self._acks.values():
            if not answer.done():
                answer.set_exception(error)
        self._acks.clear()
