"""The client side: ``pushgw push`` and ``pushgw exec`` (cron jobs and scripts).

It speaks only the documented push API, so it works against pushgw and the
official Pushgateway alike. It must start fast and imports nothing of the
server (no starlette, uvicorn, sqlite, prometheus_client): only the stdlib,
pushgw.durations and the strict text parser pushgw.exposition.text_parser.

Modules: path (the grouping path), push (HTTP with retries), spool (pushes
kept on disk while the gateway is down), run (one push through the spool),
exec (running a command and reporting on it), cli (argument parsing).
"""
