"""The pass-through photo relay: streaming sealed uploads and downloads, spool, delivery, purge."""
