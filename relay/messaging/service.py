"""The messaging part's services, built together from their explicit dependencies."""

from __future__ import annotations

from dataclasses import dataclass

from relay.audit.log import AuditLog
from relay.broker.contract import DEVICE_REVOKED, Broker
from relay.camera.spool.contract import Spool
from relay.clock import Clock
from relay.messaging.consults import ESCALATION_BATCH, ConsultService
from relay.messaging.conversations import ConversationService
from relay.messaging.escalation import EscalationPolicy
from relay.messaging.messages import EXPIRY_BATCH, MessageService
from relay.messaging.notifier import Notifier
from relay.messaging.pools import PoolService
from relay.messaging.queue import MessageQueue
from relay.settings import Settings
from relay.storage.database import Database


@dataclass(frozen=True)
class Messaging:
    notifier: Notifier
    conversations: ConversationService
    messages: MessageService
    pools: PoolService
    consults: ConsultService

    async def sweep(self) -> None:
        """End messages past their conversation's lifespan; escalate consults nobody took in time."""
        while await self.messages.expire_due() == EXPIRY_BATCH:
            pass
        while await self.consults.escalate_due() == ESCALATION_BATCH:
            pass


def build_messaging(database: Database, audit: AuditLog, spool: Spool, broker: Broker, clock: Clock,
                    settings: Settings) -> Messaging:
    """Build the services and purge a revoked device's queue when the broker says so."""
    notifier, queue = Notifier(), MessageQueue(audit, spool, clock)
    messages = MessageService(database, audit, queue, notifier, clock, max_message_bytes=settings.max_message_bytes)
    broker.subscribe(DEVICE_REVOKED, messages.device_revoked)
    conversations = ConversationService(database, audit, queue, notifier, clock,
                                        default_lifespan=settings.message_lifespan)
    escalation = EscalationPolicy(database, audit, default_seconds=settings.consult_escalation)
    return Messaging(
        notifier=notifier,
        conversations=conversations,
        messages=messages,
        pools=PoolService(database, audit, clock),
        consults=ConsultService(database, audit, notifier, clock, conversations, escalation),
    )
