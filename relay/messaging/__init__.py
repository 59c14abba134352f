"""Real-time messaging over socket.io: conversations, consults, per-device delivery."""
