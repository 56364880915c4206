"""Telling people what a run did: a success report for each phase that succeeded, a
manual-review notification (the seed's notifier, given the seed's dict) for each that did
not, the final report, and the change block of the reports' log (docs/behaviour.md,
section 8)."""

from __future__ import annotations

import socket
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from loguru import logger

from dpo import __version__
from dpo.config import Paths, Settings
from dpo.errors import DpoError
from dpo.notify.channels import FileNotificationHandler, NotificationHandler, NotificationOutcome
from dpo.notify.reports import ReportWriter, change_block, render_final, render_phase_success
from dpo.notify.review import ManualReviewNotifier
from dpo.quality import grouped_lines
from dpo.results import PipelineResult, Status, skipped_phase
from dpo.store.api import Store


@dataclass(frozen=True)
class Teller:
    """Who is told (the notification handler) and what of the plant the messages name."""

    handler: NotificationHandler
    settings: Settings
    paths: Paths

    def finish(self, result: PipelineResult, run_id: str, notify: bool, store: Store
               ) -> PipelineResult:
        """The result with its notifications and the reports' paths (as the store shares
        them); a report that cannot be written is said in the result, never raised."""
        context = self.context(run_id, result)
        reports: dict[str, str] = {}
        outcomes: list[NotificationOutcome] = []
        notifier = ManualReviewNotifier(self.handler, recipient=self.settings.recipient)
        phases = ((result.collector, "DataCollector"), (result.loader, "DataLoader"))
        for phase, short in phases:
            if phase is not None and phase.status is Status.SUCCESS:
                reports[f"{short}_success_report"] = render_phase_success(phase, context)
                continue
            data = (phase.to_dict() if phase is not None
                    else skipped_phase("DataLoaderAgent", result.skip_reason))
            note, outcome = notifier.notify(data, run_context=context, send=notify)
            reports[f"{short}_manual_review_notification"] = note.message
            outcomes.append(outcome)
        self._say_where_notes_went(outcomes)
        done = replace(result, notifications=tuple(o.to_dict() for o in outcomes))
        reports["DataPipelineOrchestrator_final_report"] = render_final(done, context)
        try:
            paths = self._write_reports(result, run_id, done, reports)
        except DpoError as exc:  # e.g. disk full at the very end: the data is already safe
            logger.error("❌ reports not written: {}", exc.message)
            return replace(done, reports=(f"NOT WRITTEN: {exc.message}",))
        return replace(done, reports=tuple(store.share(paths)))

    def _say_where_notes_went(self, outcomes: list[NotificationOutcome]) -> None:
        """No channel configured: alerts go to files nobody may read; say so, once a run."""
        if not isinstance(self.handler, FileNotificationHandler):
            return
        if any(o.sent for o in outcomes):
            logger.warning("⚠️ no notification channel is configured (notify_urls in {} or "
                           "DPO_NOTIFY_URLS): notifications were written to {} only",
                           self.paths.root / "dpo.toml", self.handler.folder)

    def _write_reports(self, result: PipelineResult, run_id: str, done: PipelineResult,
                       reports: dict[str, str]) -> list[Path]:
        writer = ReportWriter(self.paths.output_dir)
        writer.archive_previous()
        paths = writer.write(writer.stamp(f"{result.started_at:%Y%m%d_%H%M}"), reports)
        writer.log(change_block(done, run_id, paths))
        return paths

    def context(self, run_id: str, result: PipelineResult) -> dict[str, Any]:
        """What every report and notification says of the run and the plant."""
        tables = result.collector.tables + (result.loader.tables if result.loader else ())
        return {
            "run_id": run_id, "started_at": result.started_at.isoformat(),
            "plant": self.settings.plant_name or str(self.paths.root),
            "overall_status": str(result.overall_status),
            "default_dir": str(self.paths.default_dir),
            "source_dir": str(self.paths.source_dir), "schema_path": str(self.paths.schema_path),
            "annotation_path": str(self.paths.annotation_path),
            "max_retries": self.settings.max_retries, "dpo_version": __version__,
            "host": socket.gethostname(),
            # every warning, grouped: the notification's phase dict lists only the first ones
            "warning_lines": {t.table: grouped_lines(t.warnings) for t in tables if t.warnings},
        }
