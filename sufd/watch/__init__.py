"""Watching source roots: inotify and watchfiles backends, the stalled-I/O guard."""
