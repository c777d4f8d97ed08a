"""HTTP handlers: thin adapters between requests and the store."""
