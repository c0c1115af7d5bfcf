"""lloco: the Prefect-facing layer of LLoCO (local server and worker helpers, later the CLI)."""
