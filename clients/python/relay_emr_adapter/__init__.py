"""The EMR upload adapter (docs/emr-adapter.md): a keyed end-to-end endpoint inside the hospital
network that pulls sealed images addressed to it from Relay, opens them in memory, files them in
the EMR as FHIR R4 resources and acknowledges them only after the EMR accepted them.

It is built on ``relay_client`` and never imports the server package ``relay``.
"""
