"""Every action the audit log records. docs/audit.md describes each; a test keeps them in step."""

from __future__ import annotations

from enum import StrEnum


class AuditAction(StrEnum):
    TENANT_CREATED = "tenant.created"
    USER_CREATED = "user.created"
    USER_UPDATED = "user.updated"
    USER_UNLOCKED = "user.unlocked"
    LOGIN = "auth.login"
    LOGIN_LOCKED = "auth.locked"
    LOGOUT = "auth.logout"
    REAUTH = "auth.reauth"
    SESSION_EXPIRED = "auth.session_expired"
    SESSIONS_ENDED = "auth.sessions_ended"
    PASSWORD_CHANGED = "auth.password_changed"
    TOTP_ENROLLED = "auth.totp_enrolled"
    TOTP_DISABLED = "auth.totp_disabled"
    RECOVERY_CODE_USED = "auth.recovery_code_used"
    RECOVERY_CODES_REGENERATED = "auth.recovery_codes_regenerated"
    INTEGRATION_CREATED = "integration.created"
    INTEGRATION_TOKEN = "integration.token"
    DEVICE_REGISTERED = "device.registered"
    DEVICE_KEY_ROTATED = "device.key_rotated"
    DEVICE_REVOKED = "device.revoked"
    ONE_TIME_KEYS_UPLOADED = "device.one_time_keys_uploaded"
    ONE_TIME_KEY_CLAIMED = "device.one_time_key_claimed"
    DIRECTORY_READ = "directory.read"
    KEYS_ROTATED = "keys.rotated"
    AUDIT_READ = "audit.read"
    AUDIT_EXPORTED = "audit.exported"
    AUDIT_VERIFIED = "audit.verified"
