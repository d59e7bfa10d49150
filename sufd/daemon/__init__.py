"""The daemon: lifecycle, the ingest cycle and its writer, control commands, its ledger's care."""
