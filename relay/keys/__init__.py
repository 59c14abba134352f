"""Device keys, the key directory, and the server's own key-encryption keys."""
