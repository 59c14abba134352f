"""Every database column holding a secret sealed under the keyring's key-encryption keys.

``relay keys rotate`` re-seals exactly these, so a new sealed column must be declared here.
Each value is sealed with the context "<table>.<column>:<row id>" as associated data, which
binds it to its row: a blob copied to another row or column does not open.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Column, Table

from relay.storage.tables import invitations, users


@dataclass(frozen=True)
class SealedColumn:
    table: Table
    name: str

    @property
    def column(self) -> Column:
        return self.table.c[self.name]

    @property
    def row_id(self) -> Column:
        return self.table.c.id

    @property
    def label(self) -> str:
        return f"{self.table.name}.{self.name}"

    def context(self, row_id: str) -> str:
        """The associated data the value of row ``row_id`` is sealed with."""
        return f"{self.label}:{row_id}"


TOTP_SECRET = SealedColumn(users, "totp_secret")
INVITATION_CONTACT = SealedColumn(invitations, "contact")
INVITATION_DATE_OF_BIRTH = SealedColumn(invitations, "date_of_birth")
INVITATION_NOTE = SealedColumn(invitations, "sealed_note")
INVITATION_CODE = SealedColumn(invitations, "code")

SEALED_COLUMNS: tuple[SealedColumn, ...] = (
    TOTP_SECRET, INVITATION_CONTACT, INVITATION_DATE_OF_BIRTH, INVITATION_NOTE, INVITATION_CODE,
)
