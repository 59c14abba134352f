"""The chat benchmark's load, the same for both servers: connect every device, then send a fixed
number of messages at a fixed offered rate and time each send→``message.new`` at every recipient
device, which acknowledges what it received (``message.ack``, batched per device as they arrive)."""

from __future__ import annotations

import asyncio
import math
import secrets
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.chat_socket import DeviceSocket

CONNECT_CONCURRENCY = 50
ANSWER_TIMEOUT = 30.0
MAX_ACK_IDS = 500


@dataclass(frozen=True)
class Endpoint:
    """A device as the load sees it: what it presents on connecting."""

    device_id: str
    auth: dict[str, Any]


@dataclass(frozen=True)
class Outgoing:
    """One message: which endpoint sends it, where, its sealed envelope, and how many devices get it."""

    sender: int
    conversation_id: str
    envelope: bytes
    recipients: int


@dataclass
class LoadResult:
    latencies: list[float]
    messages: int
    expected: int
    send_errors: list[str]
    ack_errors: list[str]
    unanswered_acks: int
    send_seconds: float
    wall: float

    @property
    def delivered(self) -> int:
        return len(self.latencies)

    @classmethod
    def pooled(cls, results: list[LoadResult]) -> LoadResult:
        """Several runs of the same load as one: every delivery, every error, their summed time."""
        return cls([latency for result in results for latency in result.latencies],
                   sum(result.messages for result in results), sum(result.expected for result in results),
                   [error for result in results for error in result.send_errors],
                   [error for result in results for error in result.ack_errors],
                   sum(result.unanswered_acks for result in results), sum(result.send_seconds for result in results),
                   sum(result.wall for result in results))

    def percentile(self, share: float) -> float:
        """Seconds, or NaN when nothing was delivered."""
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(len(ordered) * share) - 1)] if ordered else math.nan

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies) if self.latencies else math.nan

    @property
    def p99(self) -> float:
        return self.percentile(0.99)

    @property
    def deliveries_per_second(self) -> float:
        return self.delivered / self.wall


@dataclass
class _Tracker:
    expected: int
    sent_at: dict[str, float] = field(default_factory=dict)
    seen: set[tuple[str, int]] = field(default_factory=set)
    latencies: list[float] = field(default_factory=list)
    last_delivery: float = 0.0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def delivered(self, message_id: str, device: int, at: float) -> None:
        sent = self.sent_at.get(message_id)
        if sent is None or (message_id, device) in self.seen:
            return
        self.seen.add((message_id, device))
        self.latencies.append(at - sent)
        self.last_delivery = at
        if len(self.latencies) >= self.expected:
            self.done.set()


class _DeviceClient:
    """One connected device: it acknowledges every ``message.new``, batching what arrived together."""

    def __init__(self, fleet: Fleet, index: int) -> None:
        self.fleet = fleet
        self.index = index
        self.socket: DeviceSocket | None = None
        self.pending: list[str] = []

    def on_event(self, name: str, data: Any, received_at: float) -> None:
        if name != "message.new":
            return
        if self.fleet.tracker is not None:
            self.fleet.tracker.delivered(data["message_id"], self.index, received_at)
        if not self.pending:
            asyncio.get_running_loop().call_soon(self.fleet.spawn, self.flush_acks())
        self.pending.append(data["message_id"])

    async def flush_acks(self) -> None:
        ids, self.pending = self.pending[:MAX_ACK_IDS], self.pending[MAX_ACK_IDS:]
        if self.pending:
            self.fleet.spawn(self.flush_acks())
        if not ids or self.socket is None:
            return
        answer = await asyncio.wait_for(await self.socket.emit("message.ack", {"message_ids": ids}), ANSWER_TIMEOUT)
        if not answer.get("ok"):
            self.fleet.ack_errors.append(str(answer.get("error")))


class Fleet:
    """Every device's connection to one server."""

    def __init__(self, http: aiohttp.ClientSession, url: str, endpoints: list[Endpoint]) -> None:
        self.http = http
        self.url = url
        self.endpoints = endpoints
        self.clients = [_DeviceClient(self, index) for index in range(len(endpoints))]
        self.tracker: _Tracker | None = None
        self.ack_errors: list[str] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.ack_errors.append(repr(task.exception()))

    async def connect(self) -> None:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(client: _DeviceClient) -> None:
            async with gate:
                client.socket = await DeviceSocket.connect(self.http, self.url, self.endpoints[client.index].auth,
                                                           client.on_event)

        await asyncio.gather(*(one(client) for client in self.clients))

    async def settled(self) -> int:
        """Wait for the acknowledgements still in flight; returns how many are still unanswered."""
        deadline = time.perf_counter() + ANSWER_TIMEOUT
        while self._tasks and time.perf_counter() < deadline:
            await asyncio.wait(list(self._tasks), timeout=deadline - time.perf_counter())
        return len(self._tasks)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*(client.socket.close() for client in self.clients if client.socket is not None))

    async def run(self, messages: list[Outgoing], *, rate: float, drain_timeout: float, prefix: str) -> LoadResult:
        """Send ``messages`` at ``rate`` per second and wait for every delivery (or ``drain_timeout``)."""
        tracker = self.tracker = _Tracker(sum(message.recipients for message in messages))
        self.ack_errors = []
        send_errors: list[str] = []
        run_id = secrets.token_hex(4)

        async def send(number: int, message: Outgoing) -> None:
            socket = self.clients[message.sender].socket
            assert socket is not None
            message_id = f"{prefix}{run_id}{number:08d}"
            tracker.sent_at[message_id] = time.perf_counter()
            answer = await socket.emit("message.send", {"conversation_id": message.conversation_id,
                                                        "message_id": message_id, "envelope": message.envelope})
            try:
                result = await asyncio.wait_for(answer, ANSWER_TIMEOUT)
            except TimeoutError:
                send_errors.append("no acknowledgement")
                return
            if not result.get("ok"):
                send_errors.append(str(result.get("error")))

        senders: list[asyncio.Task[None]] = []
        started = time.perf_counter()
        for number, message in enumerate(messages):
            delay = started + number / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            senders.append(asyncio.create_task(send(number, message)))
        send_seconds = time.perf_counter() - started
        try:
            await asyncio.wait_for(tracker.done.wait(), drain_timeout)
        except TimeoutError:
            pass
        await asyncio.wait(senders, timeout=ANSWER_TIMEOUT)
        unanswered = await self.settled()
        self.tracker = None
        return LoadResult(tracker.latencies, len(messages), tracker.expected, send_errors, self.ack_errors, unanswered, send_seconds,
                          max(tracker.last_delivery - started, 1e-9))
