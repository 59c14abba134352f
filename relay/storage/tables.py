"""The relational schema (SQLAlchemy Core). Alembic migrations in storage/migrations build it.

No column holds PHI in the clear: the few secrets the server keeps (TOTP seeds, a portal
invitation's contact, date of birth, note and one-time code) are encrypted under the key-encryption keys of relay/keys; tokens are kept only as hashes.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(TypeDecorator[datetime]):
    """Stores UTC without a zone (portable to SQLite) and hands back aware datetimes."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


ID = String(32)

tenants = Table(
    "tenants",
    metadata,
    Column("id", ID, primary_key=True),
    Column("slug", String(63), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("photo_retention_seconds", Integer, nullable=True),
    Column("consult_escalation_seconds", Integer, nullable=True),
)

users = Table(
    "users",
    metadata,
    Column("id", ID, primary_key=True),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("username", String(64), nullable=False),
    Column("display_name", String(200), nullable=False),
    Column("role", String(16), nullable=False),
    Column("password_hash", String(256), nullable=False),
    Column("totp_secret", LargeBinary, nullable=True),
    Column("totp_enabled", Boolean, nullable=False, default=False),
    Column("totp_last_step", BigInteger, nullable=True),
    Column("failed_logins", Integer, nullable=False, default=0),
    Column("locked_until", UtcDateTime, nullable=True),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("tenant_id", "username"),
)

recovery_codes = Table(
    "recovery_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
)

integrations = Table(
    "integrations",
    metadata,
    Column("id", ID, primary_key=True),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("public_key_pem", Text, nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("tenant_id", "name"),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("principal_type", String(16), nullable=False),
    Column("principal_id", ID, nullable=False),
    Column("device_id", ID, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("reauth_at", UtcDateTime, nullable=True),
    Column("ended_at", UtcDateTime, nullable=True),
    Index(None, "principal_type", "principal_id"),
    Index(None, "device_id"),
)

devices = Table(
    "devices",
    metadata,
    Column("id", ID, primary_key=True),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("owner_type", String(16), nullable=False),
    Column("owner_id", ID, nullable=False),
    Column("name", String(100), nullable=False),
    Column("identity_key", LargeBinary(32), nullable=True),
    Column("encryption_key_id", String(64), nullable=True),
    Column("encryption_key", LargeBinary(32), nullable=True),
    Column("encryption_key_signature", LargeBinary(64), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("rotated_at", UtcDateTime, nullable=True),
    Column("revoked_at", UtcDateTime, nullable=True),
    Index(None, "tenant_id", "owner_type", "owner_id"),
    UniqueConstraint("tenant_id", "identity_key"),
)

one_time_keys = Table(
    "one_time_keys",
    metadata,
    Column("device_id", ID, ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
    Column("key_id", String(64), primary_key=True),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("public_key", LargeBinary(32), nullable=False),
    Column("signature", LargeBinary(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

blobs = Table(
    "blobs",
    metadata,
    Column("id", ID, primary_key=True),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("sender_type", String(16), nullable=False),
    Column("sender_id", ID, nullable=False),
    Column("sender_device_id", ID, nullable=False),
    Column("conversation_id", ID, nullable=True),
    Column("envelope_id", ID, nullable=True),
    Column("length", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("received", BigInteger, nullable=False, default=0),
    Column("state", String(16), nullable=False),
    Column("head_length", Integer, nullable=True),
    Column("replacement_head_id", ID, nullable=True),
    Column("replacement_head_length", Integer, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("completed_at", UtcDateTime, nullable=True),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("retention_until", UtcDateTime, nullable=True),
    Column("purged_at", UtcDateTime, nullable=True),
    Column("purge_reason", String(32), nullable=True),
    Index(None, "tenant_id", "sender_id"),
    Index(None, "state", "expires_at"),
    Index(None, "state", "retention_until"),
)

blob_recipients = Table(
    "blob_recipients",
    metadata,
    Column("blob_id", ID, ForeignKey("blobs.id", ondelete="CASCADE"), primary_key=True),
    Column("device_id", ID, primary_key=True),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("added_at", UtcDateTime, nullable=False),
    Column("notified_at", UtcDateTime, nullable=True),
    Column("downloaded_at", UtcDateTime, nullable=True),
    Column("acknowledged_at", UtcDateTime, nullable=True),
    Column("rejected_at", UtcDateTime, nullable=True),
    Column("reject_reason", String(32), nullable=True),
    Column("purged_at", UtcDateTime, nullable=True),
    Column("purge_reason", String(32), nullable=True),
    Index(None, "tenant_id", "device_id"),
)

conversations = Table(
    "conversations",
    metadata,
    Column("id", ID, primary_key=True),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("created_by", ID, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("lifespan_seconds", Integer, nullable=False),
    Column("direct_key", String(80), nullable=True, unique=True),
    Index(None, "tenant_id", "created_at"),
)

conversation_members = Table(
    "conversation_members",
    metadata,
    Column("conversation_id", ID, ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", ID, ForeignKey("users.id"), primary_key=True),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("joined_at", UtcDateTime, nullable=False),
    Column("left_at", UtcDateTime, nullable=True),
    Index(None, "tenant_id", "user_id"),
)

messages = Table(
    "messages",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("conversation_id", ID, ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False),
    Column("sender_user_id", ID, nullable=False),
    Column("sender_device_id", ID, nullable=False),
    Column("envelope_sha256", String(64), nullable=False),
    Column("envelope_length", Integer, nullable=False),
    Column("object_id", ID, nullable=True),
    Column("blob_id", ID, nullable=True),
    Column("sent_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("recalled_at", UtcDateTime, nullable=True),
    Column("deleted_at", UtcDateTime, nullable=True),
    Column("purged_at", UtcDateTime, nullable=True),
    Column("purge_reason", String(32), nullable=True),
    Index(None, "conversation_id", "sent_at"),
    Index(None, "deleted_at", "expires_at"),
)

message_copies = Table(
    "message_copies",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("message_id", String(64), ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
    Column("device_id", ID, nullable=False),
    Column("user_id", ID, nullable=False),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("acknowledged_at", UtcDateTime, nullable=True),
    Column("read_at", UtcDateTime, nullable=True),
    UniqueConstraint("message_id", "device_id"),
    Index(None, "device_id", "acknowledged_at", "seq"),
)

pools = Table(
    "pools",
    metadata,
    Column("id", ID, primary_key=True),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("name", String(80), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("tenant_id", "name"),
)

pool_members = Table(
    "pool_members",
    metadata,
    Column("pool_id", ID, ForeignKey("pools.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", ID, ForeignKey("users.id"), primary_key=True),
    Column("position", Integer, nullable=False),
)

consults = Table(
    "consults",
    metadata,
    Column("id", ID, primary_key=True),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("conversation_id", ID, ForeignKey("conversations.id"), nullable=False, unique=True),
    Column("requester_id", ID, ForeignKey("users.id"), nullable=False),
    Column("colleague_id", ID, ForeignKey("users.id"), nullable=True),
    Column("pool_id", ID, ForeignKey("pools.id"), nullable=True),
    Column("state", String(16), nullable=False),
    Column("offered_to", ID, nullable=True),
    Column("escalation_level", Integer, nullable=False, default=0),
    Column("escalate_at", UtcDateTime, nullable=True),
    Column("accepted_by", ID, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index(None, "tenant_id", "state"),
    Index(None, "state", "escalate_at"),
)

invitations = Table(
    "invitations",
    metadata,
    Column("id", ID, primary_key=True),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("created_by", ID, nullable=False),
    Column("channel", String(8), nullable=False),
    Column("contact", LargeBinary, nullable=True),
    Column("verification_method", String(16), nullable=False),
    Column("date_of_birth", LargeBinary, nullable=True),
    Column("sealed_note", LargeBinary, nullable=True),
    Column("template", String(32), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("key_commitment", String(43), nullable=False),
    Column("recipient_device_ids", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("failed_attempts", Integer, nullable=False, default=0),
    Column("code", LargeBinary, nullable=True),
    Column("code_expires_at", UtcDateTime, nullable=True),
    Column("max_uploads", Integer, nullable=False),
    Column("uploads_used", Integer, nullable=False, default=0),
    Column("consent_id", String(64), nullable=True),
    Column("consent_sha256", String(64), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("ended_at", UtcDateTime, nullable=True),
    Index(None, "tenant_id", "created_by"),
    Index(None, "status", "expires_at"),
)

portal_sessions = Table(
    "portal_sessions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("invitation_id", ID, ForeignKey("invitations.id", ondelete="CASCADE"), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("device_id", ID, nullable=True),
    Column("verified_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
    Column("ended_at", UtcDateTime, nullable=True),
    Index(None, "invitation_id"),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("tenant_id", ID, nullable=True),
    Column("actor_type", String(16), nullable=False),
    Column("actor_id", String(64), nullable=True),
    Column("action", String(64), nullable=False),
    Column("object_type", String(32), nullable=True),
    Column("object_id", String(64), nullable=True),
    Column("outcome", String(16), nullable=False),
    Column("details", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index(None, "tenant_id", "seq"),
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)
