"""Relay's Python client SDK (docs/sdk.md). It never imports the server package ``relay``.

``RelayClient`` ties the parts together; each part is usable on its own: ``auth`` (login,
re-login), ``devices`` and ``keyfile`` (this device's keys), ``directory`` (verified peer keys),
``uploads``/``blobs`` (sealed photos), ``realtime``/``messaging`` (socket.io),
``conversations`` (conversations and consults), ``envelope`` (the sealed envelope itself).
"""

from relay_client.auth import Credentials, Session
from relay_client.client import RelayClient
from relay_client.conversations import Consult, Conversation
from relay_client.errors import (
    DeviceRevoked,
    DownloadFailed,
    InsecureKeyFile,
    KeyFileCorrupt,
    NoDevice,
    NotLoggedIn,
    RelayApiError,
    RelayClientError,
    UntrustedDevice,
    UploadFailed,
)
from relay_client.events import (
    BlobAvailable,
    ConsultUpdated,
    ConversationUpdated,
    DeviceRevokedNotice,
    MessagesDeleted,
    Receipt,
    SessionEnded,
)
from relay_client.inbox import Inbox, IncomingMessage, MemoryInbox
from relay_client.messaging import SentMessage

__all__ = [
    "BlobAvailable", "Consult", "ConsultUpdated", "Conversation", "ConversationUpdated", "Credentials",
    "DeviceRevoked", "DeviceRevokedNotice", "DownloadFailed", "Inbox", "IncomingMessage", "InsecureKeyFile",
    "KeyFileCorrupt", "MemoryInbox", "MessagesDeleted", "NoDevice", "NotLoggedIn", "Receipt", "RelayApiError",
    "RelayClient", "RelayClientError", "SentMessage", "Session", "SessionEnded", "UntrustedDevice", "UploadFailed",
]
