"""BTCTurk-compatible exchange simulator: REST + WebSocket server over a matching engine (see README.md)."""
