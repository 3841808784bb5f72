"""One module per tab; each exposes ``render(...)`` returning its components keyed by name."""
