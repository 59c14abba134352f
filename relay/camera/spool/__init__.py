"""The transient ciphertext spool: one contract, a filesystem and a Redis implementation."""
