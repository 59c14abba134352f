"""The running adapter: logs in to the relay as its integration's device, listens for
``blob.available`` over socket.io and also polls ``GET /api/v1/blobs`` (the fallback, and the
catch-up after being offline), and hands each waiting blob to the pipeline, one at a time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import aiohttp
from relay_client.errors import RelayApiError
from relay_client.integration import ClientAssertion, IntegrationClient, load_private_key
from relay_client.transfer import TRANSIENT_ERRORS

from relay_emr_adapter.backoff import Backoff, Sleep
from relay_emr_adapter.config import Config
from relay_emr_adapter.emr_client import EmrClient
from relay_emr_adapter.pipeline import Pipeline
from relay_emr_adapter.smart_auth import SmartToken
from relay_emr_adapter.state import Journal, State, Summary

log = logging.getLogger("relay_emr_adapter")


class Adapter:
    """``start`` logs in (registering the device on first run); ``drain`` files everything
    waiting now; ``run`` does that whenever the relay announces a blob, or every poll interval."""

    def __init__(self, config: Config, *, now: Callable[[], datetime] | None = None, sleep: Sleep | None = None,
                 random: Callable[[], float] | None = None) -> None:
        self.config = config
        self._now = now
        self._backoff = Backoff(config.retry.attempts, config.retry.base_delay, config.retry.max_delay,
                                **({"sleep": sleep} if sleep else {}), **({"random": random} if random else {}))
        self.journal = Journal(config.journal_file)
        self.client: IntegrationClient | None = None
        self._emr_session: aiohttp.ClientSession | None = None
        self._pipeline: Pipeline | None = None
        self._wake = asyncio.Event()

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()

    async def start(self) -> str:
        """Log in to the relay; returns this adapter's device id."""
        config = self.config
        self.client = IntegrationClient(config.relay.url, client_id=config.relay.client_id,
                                        private_key=load_private_key(config.relay.private_key),
                                        key_file=config.device_key_file, audience=config.relay.token_audience,
                                        now=self._now)
        secrets = await self.client.login(config.relay.device_name)
        self._emr_session = aiohttp.ClientSession()
        assertion = ClientAssertion(config.emr.client_id, load_private_key(config.emr.private_key),
                                    **({"now": self._now} if self._now else {}))
        token = SmartToken(self._emr_session, config.emr.token_url, assertion, config.emr.scope,
                           timeout=config.emr.request_timeout)
        emr = EmrClient(self._emr_session, config.emr.fhir_base_url, token, self._backoff,
                        timeout=config.emr.request_timeout,
                        patient_identifier_system=config.emr.patient_identifier_system)
        self._pipeline = Pipeline(self.client, emr, self.journal, config)
        self.client.realtime.on("blob.available", self._announced)
        log.info("adapter device %s logged in to the relay", secrets.device_id)
        return str(secrets.device_id)

    async def drain(self) -> dict[str, State | None]:
        """Process every blob waiting for this device now; blob id -> its state (None: pending)."""
        assert self.client is not None and self._pipeline is not None, "start() first"
        outcomes: dict[str, State | None] = {}
        for blob in await self.client.blobs.waiting():
            outcomes[blob.blob_id] = await self._pipeline.process(blob.blob_id)
        return outcomes

    async def run(self) -> None:
        """Until cancelled: connect to socket.io (retried each round while down) and drain on
        every announcement or poll interval."""
        assert self.client is not None, "start() first"
        while True:
            if not self.client.realtime.connected:
                with contextlib.suppress(RelayApiError, *TRANSIENT_ERRORS):
                    await self.client.connect()
            self._wake.clear()
            try:
                await self.drain()
            except (RelayApiError, *TRANSIENT_ERRORS) as error:
                log.warning("listing waiting blobs failed: %s", getattr(error, "code", type(error).__name__))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.poll_interval)

    def status(self) -> Summary:
        return self.journal.summary()

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.realtime.connected

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
        if self._emr_session is not None:
            await self._emr_session.close()
        self.journal.close()

    async def _announced(self, payload: dict[str, Any]) -> None:
        self._wake.set()
