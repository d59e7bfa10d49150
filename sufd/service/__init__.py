"""Installing sufd as a per-user service: systemd user unit (Linux), launchd agent (macOS)."""
