"""The manual-review notification: the seed's message layout, filled from a phase's result."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from loguru import logger

from dpo.errors import shown as shown_value
from dpo.notify.channels import (
    SUBJECT_LEAD,
    SUBJECT_PARTS,
    Notification,
    NotificationHandler,
    NotificationOutcome,
    describe_handler,
    failures_of,
    scrub,
)

_MAX_CELLS_SHOWN = 20
_WIDTH = 80


def _line(label: str, value: Any) -> list[str]:
    """One aligned `label : value` line, or none at all when the value is absent."""
    if value is None or value == "" or value == []:
        return []
    if isinstance(value, bool):
        value = "yes" if value else "no"
    elif isinstance(value, datetime):
        value = value.isoformat(sep=" ", timespec="seconds")
    return [f"{label:<20} : " + str(value).replace("\n", "\n" + " " * 23)]


def _count(value: Any) -> Any:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value


def _size(n: int) -> str:
    units = ("KiB", "MiB", "GiB")
    exp = min(len(units), max(0, (n.bit_length() - 1) // 10))
    return f"{n:,} bytes" if exp == 0 else f"{n / 1024 ** exp:.1f} {units[exp - 1]}"


def _rule(title: str) -> str:
    return f" {title} ".center(_WIDTH - 16, "-")


_SUMMARY_KEYS = (
    ("files_processed", "Files processed"), ("files_failed", "Files failed"),
    ("records_count", "Records"), ("duplicates_removed", "Duplicates removed"),
    ("data_updated", "Data updated"), ("tables_processed", "Tables processed"),
    ("tables_changed", "Tables changed"), ("tables_created", "Versions written"),
    ("data_validation", "Data validation"), ("execution_time", "Execution time"),
)
_CONTEXT_KEYS = (
    ("plant", "Plant"), ("run_id", "Run ID"), ("started_at", "Started at"), ("finished_at", "Finished at"),
    ("overall_status", "Overall status"), ("source_dir", "Source folder"),
    ("schema_path", "Schema file"), ("annotation_path", "Annotation file"),
    ("default_dir", "Output folder"), ("max_retries", "Max retries"),
    ("on_bad_rows", "Bad-row policy"), ("dpo_version", "dpo version"), ("host", "Host"),
)


def _all_errors(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The phase's errors, plus per-table errors the phase list does not already hold."""
    errors = list(result.get("errors") or [])
    seen = {(e.get("error_type"), e.get("message"), e.get("table")) for e in errors}
    for detail in result.get("details") or []:
        err = detail.get("error")
        if err and (err.get("error_type"), err.get("message"), err.get("table")) not in seen:
            errors.append(err)
    # A fail-severity data check is named first: it is a decision about the plant's data.
    return sorted(errors, key=lambda e: e.get("error_type") != "CHECK_FAILED")


def _action_line(action: dict[str, Any]) -> str:
    status = "SUCCEEDED" if action.get("success") else "FAILED"
    detail = f" — {action['detail']}" if action.get("detail") else ""
    return f"{action.get('action')} of {action.get('table')}: {status}{detail}"


def _next_step(err: dict[str, Any], ctx: dict[str, Any]) -> str:
    """Concrete advice for one error, naming the file, cell or folder involved."""
    file = err.get("file") or "the file named above"
    table, col = err.get("table") or "the table", err.get("column")
    where = f"in {file}" + (f" (sheet {err['sheet']})" if err.get("sheet") else "")
    at = ", ".join(f"{k} {err[k]}" for k in ("row", "column") if err.get(k))
    total = int(err.get("cells_total") or 0)
    cell = (f"the {total:,} bad cells listed above" + (f" (first: {at})" if at else "")
            if total > 1 or not at else f"the cell at {at}")
    retries = f" after {ctx['max_retries']} retries" if ctx.get("max_retries") else ""
    schema = ctx.get("schema_path") or "the schema file"
    steps = {
        "FILE_NOT_FOUND": f"Check the source folder {err.get('file') or ctx.get('source_dir')}:"
                          " it must exist and hold the exported files the schema names.",
        "FILE_READ_ERROR": f"Open {file} in Excel: it may be corrupt, still being copied or "
                           "lack the expected sheet. Re-export it, then rerun.",
        "MISSING_FIELDS": f"Restore the missing column(s) {where}, or correct required_fields "
                          f"in {schema}.",
        "DATA_PROCESSING_ERROR": f"Fix {cell} {where}, or rerun with `dpo run --quarantine` "
                                 "to load the good rows now (bad rows go to quarantine/).",
        "SCHEMA_MISMATCH": f"Make {table}{' column ' + col if col else ''} in {file} match the "
                           f"dtype in {schema}.",
        "SCHEMA_INVALID": f"Correct {err.get('file') or schema} as listed above; no data "
                          "was read.",
        "CONFIG_ERROR": "Correct the setting named above (argument, config file or flag).",
        "WRITE_ERROR": "Check free disk space and write permission on "
                       f"{ctx.get('default_dir') or 'the output folder'}.",
        "INTEGRITY_ERROR": f"{file} of {table} no longer matches its recorded hash: restore a "
                           f"verified earlier version (`dpo versions {table}`, then "
                           f"`dpo rollback {table} --to VERSION`).",
        "ROLLBACK_ERROR": f"No verified earlier copy of {table} exists: fix the error above "
                          "and rerun.",
        "LOCKED": f"{file} stayed locked{retries} (open in Excel or still copying): close it "
                  "and rerun.",
        "CHECK_FAILED": f"Correct the rows of {table} named under DATA CHECKS in their source "
                        "files (or the check in the checks file, if the rule is wrong), then "
                        f"rerun; `dpo check {table}` lists them without a run.",
    }
    return steps.get(str(err.get("error_type")),
                     "Read the log of this run for the traceback, fix the cause and rerun.")


def _summary(res: dict[str, Any]) -> list[str]:
    lines = [_rule("SUMMARY")]
    for key, label in _SUMMARY_KEYS:
        lines += _line(label, _count(res.get(key)))
    details = res.get("details") or []
    statuses = [str(d.get("status")) for d in details]
    by_status = ", ".join(f"{statuses.count(s)} {s}" for s in dict.fromkeys(statuses))
    lines += _line("Tables", f"{len(details)} ({by_status})" if details else None)
    rejected = sum(int(d.get("rows_rejected") or 0) for d in details)
    lines += _line("Rows quarantined", _count(rejected) if rejected else None)
    lines += _line("Files moved", len(res["files_moved"]) if "files_moved" in res else None)
    lines += _line("Errors", len(_all_errors(res)))
    actions = res.get("healing_actions") or []
    ok = sum(1 for a in actions if a.get("success"))
    return [*lines, *_line("Healing actions", f"{len(actions)} ({ok} succeeded, "
                           f"{len(actions) - ok} failed)" if actions else 0), ""]


def _error_block(n: int, err: dict[str, Any], actions: list[dict[str, Any]]) -> list[str]:
    lines = ["", f"ERROR #{n}: {err.get('error_type')}"]
    for key in ("table", "file", "sheet", "row", "column", "message"):
        lines += [f"  {ln}" for ln in _line(key.capitalize(), err.get(key))]
    cells, shown = err.get("cells") or [], _MAX_CELLS_SHOWN
    total = int(err.get("cells_total") or len(cells))
    if cells:
        lines.append(f"  {'Bad values':<20} : {total:,} (first: {shown_value(cells[0].get('value'))})")
        lines += [f"    - {_cell_place(c, err)}row {c.get('row')}, column {c.get('column')}: "
                  f"{shown_value(c.get('value'))} {c.get('reason')}" for c in cells[:shown]]
        if total > min(len(cells), shown):
            lines.append(f"    ... and {total - min(len(cells), shown):,} more")
    mine = [a for a in actions if err.get("table") and a.get("table") == err["table"]]
    if err.get("table"):
        lines.append("  Recovery actions:" if mine else
                     "  Recovery actions: none were attempted for this table")
    return lines + [f"    {i}. {_action_line(a)}" for i, a in enumerate(mine, 1)]


def _cell_place(cell: dict[str, Any], err: dict[str, Any]) -> str:
    """File and sheet of a bad cell, when they differ from the error's own (merged files)."""
    same = (cell.get("file"), cell.get("sheet")) == (err.get("file"), err.get("sheet"))
    return "" if same else f"{cell.get('file')} [{cell.get('sheet')}] "


def warning_lines(table: dict[str, Any], ctx: dict[str, Any]) -> list[str]:
    """Every warning of a table, grouped: from the run's full list in the context (a phase
    dict lists only the first ones), else from the dict."""
    full = (ctx.get("warning_lines") or {}).get(table.get("table"))
    if full is not None:
        return list(full)
    return [w["message"] for w in table.get("warnings") or []]


def _error_details(res: dict[str, Any], ctx: dict[str, Any]) -> list[str]:
    actions = res.get("healing_actions") or []
    lines = [_rule("ERROR DETAILS")]
    for n, err in enumerate(_all_errors(res), 1):
        lines += _error_block(n, err, actions)
    warnings = []
    for d in res.get("details") or []:
        warnings += [f"WARNING ({d.get('table')}): {w}" for w in warning_lines(d, ctx)]
        if d.get("rows_rejected"):
            warnings.append(f"WARNING ({d.get('table')}): {d['rows_rejected']:,} row(s) "
                            "quarantined; the other rows were loaded")
    lines += ["", *warnings] if warnings else []
    return [*lines, *([] if lines[1:] else ["No errors were recorded for this phase."]), ""]


def _checks(res: dict[str, Any]) -> list[str]:
    """The data checks that failed, fail severity first, each with its first rows."""
    failed = sorted((c for c in res.get("checks") or [] if c.get("status") == "failed"),
                    key=lambda c: c.get("severity") != "fail")
    if not failed:
        return []
    lines = [_rule("DATA CHECKS")]
    for check in failed:
        count = (f"{check.get('rows_after')} rows against {check.get('rows_before')} published"
                 if check.get("rule") == "row_count_change"
                 else f"{_count(check.get('failing_rows'))} row(s)")
        lines.append(f"[{check.get('severity')}] {check.get('table')}: {check.get('name')!r} "
                     f"({check.get('rule')}) failed on {count}")
        lines += [f"    - {e.get('file')} [{e.get('sheet')}] row {e.get('row')}: "
                  f"{e.get('values')}" for e in (check.get("examples") or [])[:5]]
    return [*lines, ""]


def _healing(res: dict[str, Any]) -> list[str]:
    body = [f"{i}. {_action_line(a)}" for i, a in enumerate(res.get("healing_actions") or [], 1)]
    return [_rule("HEALING ACTIONS"), *(body or ["No healing actions were taken."]), ""]


def _next_steps(res: dict[str, Any], ctx: dict[str, Any]) -> list[str]:
    steps = [_next_step(e, ctx) for e in _all_errors(res)]
    steps += [f"Rollback of {a.get('table')} failed, so its previous output is not in place: "
              "fix the error above and rerun before using that table."
              for a in res.get("healing_actions") or []
              if a.get("action") == "rollback" and not a.get("success")]
    if res.get("reason"):
        steps.append(f"This phase did not run: {res['reason']}")
    if not steps and res.get("status") == "warning":
        steps.append("Data was loaded; review the warnings above before the next run.")
    return [_rule("NEXT STEPS"), *(f"{i}. {s}" for i, s in enumerate(dict.fromkeys(steps), 1)),
            ""]


def _metadata(res: dict[str, Any], ctx: dict[str, Any]) -> list[str]:
    lines = [_rule("METADATA")]
    for key, label in _CONTEXT_KEYS:
        lines += _line(label, ctx.get(key))
    known = {k for k, _ in _CONTEXT_KEYS}
    for key, value in ctx.items():  # whatever else the caller thought worth recording
        if key not in known and isinstance(value, str | int | float | datetime | Path):
            lines += _line(key, value)
    seconds = res.get("execution_seconds")
    lines += _line("Duration (s)", f"{seconds:.3f}" if seconds is not None else None)
    for key, label in (("disk_usage_bytes", "Disk usage"), ("peak_memory_bytes", "Peak memory")):
        lines += _line(label, _size(res[key]) if res.get(key) else None)
    return [*lines, ""]


_LEAD_ERRORS = 3


def _subject(component: str, res: dict[str, Any], ctx: dict[str, Any]) -> str:
    """Which plant and which tables, not only which component: an inbox shows the subject."""
    parts = [f"{SUBJECT_LEAD}{component}"]
    if ctx.get("plant"):
        parts.append(str(ctx["plant"]))
    failed = [str(d.get("table")) for d in res.get("details") or [] if d.get("status") == "error"]
    review = [str(d.get("table")) for d in res.get("details") or []
              if d.get("status") == "warning"]
    if failed:
        parts.append("failed: " + ", ".join(failed))
    elif review:  # rows quarantined, a file with headers only: someone must look
        parts.append("to review: " + ", ".join(review))
    elif res.get("status") == "skipped":
        parts.append("did not run")
    elif res.get("status") in ("error", "failed"):
        parts.append("failed")
    return SUBJECT_PARTS.join(parts)


def _lead(res: dict[str, Any]) -> list[str]:
    """The first lines of the message: the error itself, before any header (mail previews
    and phone notifications show only these)."""
    errors = _all_errors(res)
    lines = [f"{e.get('table') or res.get('component')}: {e.get('message')}"
             for e in errors[:_LEAD_ERRORS]]
    if len(errors) > _LEAD_ERRORS:
        lines.append(f"... and {len(errors) - _LEAD_ERRORS} more error(s): see ERROR DETAILS below")
    if not errors and res.get("reason"):
        lines.append(f"{res.get('component')} did not run: {res['reason']}")
    return [*lines, ""] if lines else []


class ManualReviewNotifier:
    """Builds the seed's manual-review message from a phase result dict, and sends it."""

    def __init__(self, handler: NotificationHandler, *, recipient: str = "plant-data-team",
                 agent: str = "DataPipelineOrchestrator") -> None:
        self.handler = handler
        self.recipient = recipient
        self.agent = agent

    def build_message(self, component_result: dict[str, Any], *,
                      run_context: dict[str, Any]) -> Notification:
        res, ctx = component_result, run_context
        component, status = str(res.get("component")), str(res.get("status"))
        now = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
        header = ["=" * _WIDTH, "MANUAL REVIEW NOTIFICATION".center(_WIDTH).rstrip(),
                  "=" * _WIDTH, "", *_line("Agent ID", self.agent),
                  *_line("Component", component), *_line("Status", status.upper()),
                  *_line("Timestamp", now), *_line("Run ID", ctx.get("run_id")),
                  *_line("Overall status", str(ctx.get("overall_status") or "").upper()),
                  *_line("Reason", res.get("reason")), ""]
        lines = [*_lead(res), *header, *_summary(res), *_error_details(res, ctx), *_checks(res),
                 *_healing(res),
                 *_next_steps(res, ctx), *_metadata(res, ctx), "=" * _WIDTH]
        priority = {"warning": "medium", "success": "low"}.get(status, "high")
        # scrub: a run_context value or error text could quote a channel URL with its secret
        return Notification(self.recipient, scrub(_subject(component, res, ctx)),
                            scrub("\n".join(lines) + "\n"), priority)

    def notify(self, component_result: dict[str, Any], *, run_context: dict[str, Any],
               send: bool = True) -> tuple[Notification, NotificationOutcome]:
        note = self.build_message(component_result, run_context=run_context)
        component = str(component_result.get("component"))
        if not send:
            return note, NotificationOutcome(component, False, "disabled", None)
        channel = describe_handler(self.handler)
        logger.info("📧 Sending manual review notification for {} to {} via {} (priority {})",
                    component, note.recipient, channel, note.priority)
        try:  # one broad catch: whatever the channel does, the pipeline goes on
            ok = self.handler.send_notification(note.recipient, note.subject, note.message,
                                                note.priority)
            error = None if ok else "; ".join(map(str, failures_of(self.handler, channel)))
        except Exception as exc:  # noqa: BLE001 - scrubbed, logged and returned in the outcome
            ok, error = False, scrub(f"{type(exc).__name__}: {exc}")
        if ok:
            logger.info("📧 Manual review notification for {} sent", component)
        else:
            logger.warning("⚠️ Manual review notification for {} not sent: {}", component,
                           error)
        return note, NotificationOutcome(component, ok, channel, error)
