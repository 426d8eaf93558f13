"""Realtime delivery: wire protocol, this process's hub, the broker between processes."""
