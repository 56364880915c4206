"""`dpo serve`: the long-running service (runs when the exports land, answers over HTTP).

`service` (the runner, the schedule, the lifecycle) · `watch` (file events, the settle logic,
the schedule and how run requests coalesce) · `endpoints` (HTTP: /health, /metrics, /, /runs,
POST /run). The command is `dpo.cli.serve`; it imports nothing of dpo.cli.
"""
