"""One module per measured area; each exposes `run(console) -> dict`."""
