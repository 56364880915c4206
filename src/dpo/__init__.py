"""dpo: a data pipeline orchestrator for injection-moulding plants.

Excel exports (.xlsb/.xlsx) -> Phase 1 DataCollector -> Phase 2 DataLoaderAgent -> a typed,
versioned Parquet store, with rollback, notifications and reports. The public API is the
seed's names, and `open_table` (read a published table, hash-verified, from a store on disk
or on object storage); everything else is importable from its module but not promised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "DataCollector",
    "DataLoaderAgent",
    "DataPipelineOrchestrator",
    "ManualReviewNotifier",
    "MockNotificationHandler",
    "__version__",
    "open_table",
    "pipeline_health_check",
]

if TYPE_CHECKING:
    from dpo.collect.collector import DataCollector
    from dpo.consume.table import open_table
    from dpo.load.loader import DataLoaderAgent
    from dpo.notify.channels import MockNotificationHandler
    from dpo.notify.review import ManualReviewNotifier
    from dpo.pipeline.health import pipeline_health_check
    from dpo.pipeline.orchestrator import DataPipelineOrchestrator

# Imported on first use so `dpo --help` and `dpo health` do not pay for pandas/pyarrow.
_HOMES = {
    "DataCollector": "dpo.collect.collector",
    "DataLoaderAgent": "dpo.load.loader",
    "DataPipelineOrchestrator": "dpo.pipeline.orchestrator",
    "ManualReviewNotifier": "dpo.notify.review",
    "MockNotificationHandler": "dpo.notify.channels",
    "open_table": "dpo.consume.table",
    "pipeline_health_check": "dpo.pipeline.health",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'dpo' has no attribute {name!r}")
