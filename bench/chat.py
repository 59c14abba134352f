"""End-to-end encrypted chat over socket.io: the relay against a bare python-socketio forwarder, in one run.

    .venv/bin/python -m bench.chat [--users 100] [--devices-per-user 10] [--group 10]
                                   [--messages 60] [--rates 1,5] [--rounds 3] [--scaleout]

Both servers run as their own processes on 127.0.0.1. The relay is `relay serve` on its embedded
defaults (or, with --scaleout, on PostgreSQL and Redis); its users, devices, device-bound sessions and
group conversations are made through its REST API, with the login rate limit raised for the setup.
Every device holds one websocket to each server in turn, driven by the same light client
(bench/chat_socket.py) from this process. Envelopes are sealed to every other device of the
conversation before the clock starts; after a short warm-up, a fixed number of messages is sent at
each offered rate, and each send→`message.new` is timed at every recipient device, which acknowledges
(`message.ack`). The two servers are measured in turn, several rounds each, and the percentiles
are taken over every delivery of every round: a message's deliveries arrive together, so one
round's p99 is decided by its slowest one or two messages, which is noise on either server. Once every device is connected, this process freezes what it holds out of its
garbage collector's reach, so its own collection pauses land in neither server's figures. Idle memory
is the server's RSS with every device connected and idle, minus its RSS before, divided by the number
of connections. Targets: relay p99 <= 1.5x the bare forwarder's, <= 100 KiB per idle connection.
With --scaleout the database relay_bench is emptied first.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from relay_client.envelope import Manifest, seal_bytes

from bench.chat_load import Endpoint, Fleet, LoadResult, Outgoing
from bench.chat_population import Conversation, populate
from bench.chat_servers import (
    LOGIN_RATE_PER_MINUTE,
    Backend,
    Server,
    forget_redis_keys,
    start_forwarder,
    start_relay,
    stop,
)
from bench.proc import cpu_seconds, rss_now_kib
from tests.support.envelopes import keyring_of, recipient_of

P99_TARGET = 1.5
IDLE_KIB_TARGET = 100
SETTLE_SECONDS = 2.0
POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/relay_bench"
REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass
class Phase:
    """One offered rate on one server."""

    load: LoadResult
    server_cpu_seconds: float
    client_cpu_seconds: float


@dataclass
class Measurement:
    idle_kib_per_connection: float
    connect_seconds: float
    phases: list[Phase]


def pooled(rounds: list[Measurement]) -> Measurement:
    """The rounds as one: the first round's connection figures (later rounds reconnect to a server
    whose memory already grew once), each rate's deliveries and CPU time over every round."""
    phases = [Phase(LoadResult.pooled([phase.load for phase in same_rate]),
                    sum(phase.server_cpu_seconds for phase in same_rate),
                    sum(phase.client_cpu_seconds for phase in same_rate))
              for same_rate in zip(*(measurement.phases for measurement in rounds), strict=True)]
    return Measurement(rounds[0].idle_kib_per_connection, rounds[0].connect_seconds, phases)


def sender_step(devices: int, start: int) -> int:
    """A step through a conversation's devices that visits each one, hopping between users."""
    step = start
    while math.gcd(step, devices) != 1:
        step += 1
    return step


async def sealed_plan(conversations: list[Conversation], count: int, plaintext_bytes: int,
                      devices_per_user: int) -> tuple[list[Outgoing], list[int]]:
    """``count`` envelopes, round robin over conversations and their devices, each sealed by its sender
    to every other device of the conversation; returns them and their sizes. Endpoints are numbered
    in the order of ``conversations`` and their devices."""
    index_of = {device.id: number for number, device in
                enumerate(device for conversation in conversations for device in conversation.devices)}
    plan, sizes = [], []
    for number in range(count):
        conversation = conversations[number % len(conversations)]
        devices = conversation.devices
        turn = number // len(conversations)
        sender = devices[turn * sender_step(len(devices), devices_per_user + 1) % len(devices)]
        recipients = [device for device in devices if device.id != sender.id]
        envelope = await seal_bytes(Manifest("text/plain"), os.urandom(plaintext_bytes),
                                    sender=keyring_of(sender.registered).sender,
                                    recipients=[recipient_of(device.registered) for device in recipients])
        plan.append(Outgoing(index_of[sender.id], conversation.id, envelope, len(recipients)))
        sizes.append(len(envelope))
    return plan, sizes


async def measure(http: aiohttp.ClientSession, server: Server, endpoints: list[Endpoint], warmup: list[Outgoing],
                  messages: list[Outgoing], args: argparse.Namespace) -> Measurement:
    fleet = Fleet(http, server.url, endpoints)
    before = rss_now_kib(server.pid)
    started = time.perf_counter()
    phases = []
    try:
        await fleet.connect()
        connect_seconds = time.perf_counter() - started
        gc.collect()
        gc.freeze()
        await asyncio.sleep(SETTLE_SECONDS)
        idle = (rss_now_kib(server.pid) - before) / len(endpoints)
        await fleet.run(warmup, rate=args.rates[0], drain_timeout=args.drain_timeout, prefix="warm")
        for number, rate in enumerate(args.rates):
            server_cpu, client_cpu = cpu_seconds(server.pid), time.process_time()
            load = await fleet.run(messages, rate=rate, drain_timeout=args.drain_timeout, prefix=f"load{number}")
            phases.append(Phase(load, cpu_seconds(server.pid) - server_cpu, time.process_time() - client_cpu))
    finally:
        await fleet.close()
        gc.unfreeze()
    return Measurement(idle, connect_seconds, phases)


def row(name: str, bare: float, relay: float, unit: str, digits: int = 1, ratio: bool = True) -> None:
    ratio_text = f"{relay / bare:>6.2f}x" if ratio and bare else "      -"
    print(f"  {name:<32} {bare:>12.{digits}f} {relay:>12.{digits}f} {ratio_text}  {unit}")


def report_rounds(rates: list[float], bare: list[Measurement], relay: list[Measurement]) -> None:
    for number, rate in enumerate(rates):
        for name, rounds in (("bare", bare), ("relay", relay)):
            figures = "  ".join(f"{phase.load.p50 * 1000:.1f}/{phase.load.p99 * 1000:.1f}"
                                for phase in (measurement.phases[number] for measurement in rounds))
            print(f"  round by round at {rate:g} messages/s, {name:>5} p50/p99 ms: {figures}")


def report(rates: list[float], bare: Measurement, relay: Measurement) -> None:
    print(f"  {'':<32} {'bare':>12} {'relay':>12} {'ratio':>7}")
    row("connecting every device", bare.connect_seconds, relay.connect_seconds, "s")
    row("RSS per idle connection", bare.idle_kib_per_connection, relay.idle_kib_per_connection, "KiB")
    verdicts = []
    for rate, bare_phase, relay_phase in zip(rates, bare.phases, relay.phases, strict=True):
        b, r = bare_phase.load, relay_phase.load
        print(f"offered {rate:g} messages/s ({rate * r.expected / r.messages:g} deliveries/s):")
        row("send→deliver latency p50", b.p50 * 1000, r.p50 * 1000, "ms")
        row("send→deliver latency p99", b.p99 * 1000, r.p99 * 1000, "ms")
        row("delivered messages/s", b.deliveries_per_second, r.deliveries_per_second,
            "copies received by devices per second", 0)
        row("delivered", b.delivered, r.delivered, f"of {r.expected}", 0, ratio=False)
        row("server CPU", bare_phase.server_cpu_seconds, relay_phase.server_cpu_seconds, "s")
        row("client CPU", bare_phase.client_cpu_seconds, relay_phase.client_cpu_seconds, "s")
        for name, load in (("bare", b), ("relay", r)):
            for kind, errors in (("message.send", load.send_errors), ("message.ack", load.ack_errors)):
                if errors:
                    print(f"  {name}: {len(errors)} {kind} errors, first: {errors[0]}")
            if load.unanswered_acks:
                print(f"  {name}: {load.unanswered_acks} message.ack batches still unanswered at the end")
        complete = r.delivered == r.expected and not r.send_errors
        ratio = r.p99 / b.p99
        verdict = "met" if complete and ratio <= P99_TARGET else "NOT met" + ("" if complete else " (deliveries missing)")
        verdicts.append(f"target p99 <= {P99_TARGET}x the bare forwarder at {rate:g} messages/s: {ratio:.2f}x {verdict}")
    for verdict in verdicts:
        print(verdict)
    idle_met = relay.idle_kib_per_connection <= IDLE_KIB_TARGET
    print(f"target <= {IDLE_KIB_TARGET} KiB per idle connection: {relay.idle_kib_per_connection:.1f} KiB "
          f"{'met' if idle_met else 'NOT met'}")


async def run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="relay-chat-bench-"))
    backend = Backend(POSTGRES_URL, REDIS_URL) if args.scaleout else Backend()
    servers: list[Server] = []
    try:
        servers.append(forwarder := await start_forwarder(work))
        servers.append(relay := await start_relay(work, backend, max_devices_per_user=args.devices_per_user))
        devices = args.users * args.devices_per_user
        print(f"relay: {backend.name}; login rate limit raised to {LOGIN_RATE_PER_MINUTE}/min for the setup "
              f"(RELAY_LOGIN_RATE_PER_MINUTE)", flush=True)
        started = time.perf_counter()
        conversations = await populate(relay.url, users=args.users, devices_per_user=args.devices_per_user,
                                       group_size=args.group)
        print(f"setup: {args.users} users x {args.devices_per_user} devices = {devices} device-bound sessions, "
              f"{len(conversations)} group conversations of {args.group} users in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
        plan, sizes = await sealed_plan(conversations, args.warmup + args.messages, args.plaintext,
                                        args.devices_per_user)
        warmup, messages = plan[:args.warmup], plan[args.warmup:]
        members = [(conversation, device) for conversation in conversations for device in conversation.devices]
        bare_endpoints = [Endpoint(device.id, {"device_id": device.id, "rooms": [conversation.id]})
                          for conversation, device in members]
        relay_endpoints = [Endpoint(device.id, {"token": device.token}) for _, device in members]
        print(f"load: {len(messages)} messages at each offered rate after {len(warmup)} warm-up messages; "
              f"{args.plaintext}-byte plaintexts sealed to {messages[0].recipients} devices each: envelopes of "
              f"{min(sizes)}-{max(sizes)} bytes, {sum(m.recipients for m in messages)} deliveries per rate", flush=True)
        timeout = aiohttp.ClientTimeout(total=None, connect=30)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as http:
            bare: list[Measurement] = []
            measured: list[Measurement] = []
            for _ in range(args.rounds):
                bare.append(await measure(http, forwarder, bare_endpoints, warmup, messages, args))
                measured.append(await measure(http, relay, relay_endpoints, warmup, messages, args))
        report_rounds(args.rates, bare, measured)
        print(f"every round pooled ({args.rounds} x {len(messages)} messages per rate and server):")
        report(args.rates, pooled(bare), pooled(measured))
    except Exception:
        for server in servers:
            print(f"--- {server.log.name} (last lines)\n{server.log_tail()}")
        raise
    finally:
        for server in servers:
            stop(server)
        await forget_redis_keys(backend)
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100, help="clinicians")
    parser.add_argument("--devices-per-user", type=int, default=10, help="connected devices per clinician")
    parser.add_argument("--group", type=int, default=10, help="users per group conversation")
    parser.add_argument("--messages", type=int, default=60, help="messages timed at each rate")
    parser.add_argument("--warmup", type=int, default=10, help="messages sent first, not timed")
    parser.add_argument("--rates", type=lambda text: [float(rate) for rate in text.split(",")], default=[1.0, 5.0],
                        help="offered messages per second, one timed run each")
    parser.add_argument("--rounds", type=int, default=3,
                        help="times each server is measured, in turn; percentiles pool every round's deliveries")
    parser.add_argument("--plaintext", type=int, default=512, help="bytes of each message's plaintext")
    parser.add_argument("--drain-timeout", type=float, default=60.0,
                        help="seconds to wait for the last deliveries after the last send")
    parser.add_argument("--scaleout", action="store_true", help=f"run the relay on {POSTGRES_URL} and {REDIS_URL}")
    args = parser.parse_args()
    if args.users % args.group:
        parser.error("--users must be a multiple of --group")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
