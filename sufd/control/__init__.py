"""The control socket: protocol, the daemon's server, the client."""
