"""An EMR adapter wired to a test relay and a stand-in EMR, as an integration engineer would set
it up: an integration principal with its key, an EMR client key, a TOML configuration file;
and photos sealed to it by a clinician's device."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from PIL import Image
from relay_client.envelope import ClinicalMetadata, Manifest, Recipient, seal_bytes
from relay_emr_adapter.adapter import Adapter
from relay_emr_adapter.config import Config, load_config

from tests.support.envelopes import Member, keyring_of, upload
from tests.support.fhir_emr import StandInEmr
from tests.support.harness import Account, Relay
from tests.support.integration import AdapterKey

MRN_SYSTEM = "urn:oid:1.2.36.146.595.217.0.1"


def jpeg(width: int = 64, height: int = 48, **save: Any) -> bytes:
    """A small real JPEG (no EXIF unless ``exif=`` is given)."""
    image = Image.new("RGB", (width, height))
    image.putdata([(x * 4 % 256, y * 5 % 256, (x + y) % 256) for y in range(height) for x in range(width)])
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, **save)
    return out.getvalue()


def write_private_key(path: Path, key: AdapterKey) -> Path:
    pem = key.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    return path


@dataclass
class AdapterSetup:
    relay: Relay
    emr: StandInEmr
    config_path: Path
    integration_id: str

    def config(self) -> Config:
        return load_config(self.config_path)

    def adapter(self, sleeps: list[float] | None = None) -> Adapter:
        """A new adapter process from the same configuration and state directory. Backoff waits
        are recorded in ``sleeps`` and not actually waited."""
        async def sleep(seconds: float) -> None:
            if sleeps is not None:
                sleeps.append(seconds)

        return Adapter(self.config(), now=self.relay.clock.now, sleep=sleep)


async def set_up_adapter(relay: Relay, emr: StandInEmr, admin: Account, directory: Path, *,
                         profile: str = "media", request_timeout: float = 2.0, extra: str = "") -> AdapterSetup:
    directory.mkdir(parents=True, exist_ok=True)
    relay_key, emr_key = AdapterKey.generate(), AdapterKey.generate()
    created = await relay.call("POST", "/api/v1/integrations", token=admin.token,
                               json={"name": "emr-adapter", "public_key_pem": relay_key.public_pem})
    assert created.status == 201, await created.text()
    integration_id = (await created.json())["id"]
    emr.register_client("relay-adapter", emr_key.private_key.public_key())
    write_private_key(directory / "relay.pem", relay_key)
    write_private_key(directory / "emr.pem", emr_key)
    config_path = directory / "adapter.toml"
    config_path.write_text(f"""
[relay]
url = "{relay.url}"
client_id = "{integration_id}"
private_key = "relay.pem"

[emr]
fhir_base_url = "{emr.fhir_base_url}"
token_url = "{emr.token_url}"
client_id = "relay-adapter"
private_key = "emr.pem"
request_timeout = {request_timeout}
patient_identifier_system = "{MRN_SYSTEM}"

[adapter]
state_dir = "state"
profile = "{profile}"
poll_interval = 60

[retry]
attempts = 3
base_delay = 0.5
max_delay = 4
{extra}
""")
    return AdapterSetup(relay, emr, config_path, integration_id)


def photo_manifest(**clinical: str) -> Manifest:
    values = {"patient_ref": "12345", "body_site": "forearm", "laterality": "left",
              "captured_at": "2026-11-02T08:55:00Z", "captured_by": "user-7"} | clinical
    return Manifest("image/jpeg", ClinicalMetadata(**{k: v for k, v in values.items() if v != ""}))


async def send_photo(relay: Relay, sender: Member, adapter: Adapter, photo: bytes, manifest: Manifest) -> str:
    """Seal ``photo`` from ``sender``'s device to the adapter's device and upload it; the blob id."""
    assert adapter.client is not None
    keys = adapter.client.devices.keyring()
    recipient = Recipient(keys.device_id, keys.encryption_key_id, keys.encryption_key.public_key())
    envelope = await seal_bytes(manifest, photo, sender=keyring_of(sender.device).sender, recipients=[recipient])
    return await upload(relay, sender.token, envelope)
