"""Import jobs: an uploaded file becomes a job row; the job runs the existing importers.

Accounts and reps go through accounts.imports (reading and column mapping) and the bulk upsert
services; a plan's territories go through integrations.geo. A small file runs at once, inside the
request that uploaded it; a larger one runs on a Celery worker. Either way the answer is the job.
"""

from __future__ import annotations

import logging
import queue
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from django.db import connections, transaction
from django.utils import timezone

from tessera_common.errors import ApplicationError
from tessera_common.events import JOB_FINISHED, event_emit

from .choices import ImportKind, ImportStatus
from .models import ImportJob

logger = logging.getLogger(__name__)

# Below this a file is imported inside the request (about a second for 2,000 account rows); above
# it the request only queues the job, so an upload never waits on a 100,000-row import.
SYNC_LIMIT_BYTES = 256 * 1024
# A territory import ends by rebuilding the plan's account assignments: about 10 s for the demo's
# 3,141 counties and 20,000 accounts whatever the file's size, so only a few polygons run inline.
TERRITORY_SYNC_LIMIT_BYTES = 64 * 1024
MAX_UPLOAD_BYTES = 100 * 1024 * 1024
# Problem rows kept on the job; the totals count all of them.
REPORT_ROW_LIMIT = 10_000
# Share of the bar each stage of a bulk upsert fills: reading, checking rows, writing.
_STAGES = {"read": (0, 15), "validate": (15, 55), "write": (55, 99)}
_STAGE_NAMES = {"read": "Reading the file", "validate": "Checking rows", "write": "Writing"}


def import_job_create(
    *,
    kind: str,
    data: bytes,
    file_name: str,
    actor,
    options: dict | None = None,
    plan=None,
    run_small_now: bool = True,
) -> ImportJob:
    """Store the upload as a queued job. Small files are imported now (the job comes back finished);
    others are sent to a worker when the transaction commits."""
    if kind not in ImportKind.values:
        raise ApplicationError(
            f"Unknown import kind {kind!r}; use {', '.join(ImportKind.values)}.", {"kind": ["unknown"]}
        )
    if actor is None or not getattr(actor, "can_plan", False):
        raise ApplicationError("Only planners and admins can import files.", status=403)
    if not data:
        raise ApplicationError("The file is empty.", {"file": ["The submitted file is empty."]})
    if len(data) > MAX_UPLOAD_BYTES:
        raise ApplicationError(
            f"The file is {len(data) / 1e6:.0f} MB; the limit is {MAX_UPLOAD_BYTES // 10**6} MB.",
            {"file": ["too large"]},
        )
    if kind == ImportKind.TERRITORIES and plan is None:
        raise ApplicationError("A territory import needs a plan.", {"plan": ["This field is required."]})
    job = ImportJob.objects.create(
        kind=kind,
        plan=plan,
        file_name=(file_name or "upload")[:255],
        file_size=len(data),
        data=data,
        options=options or {},
        created_by=actor,
        message="Queued",
    )
    limit = TERRITORY_SYNC_LIMIT_BYTES if kind == ImportKind.TERRITORIES else SYNC_LIMIT_BYTES
    if run_small_now and len(data) <= limit:
        return import_job_run(job=job, reraise=False)

    from .tasks import run_import

    def send() -> None:
        result = run_import.delay(job.pk)
        ImportJob.objects.filter(pk=job.pk).update(celery_task_id=result.id or "")

    transaction.on_commit(send)
    return job


class _ProgressWriter:
    """Writes a job's progress from its own thread, hence its own database connection: the import
    runs in one transaction, and progress written through that transaction would stay invisible to
    whoever polls the job until the very end."""

    def __init__(self, job_id: int):
        self.job_id = job_id
        self.queue: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, name=f"import-progress-{job_id}", daemon=True)
        self.thread.start()
        self.last = -1

    def __call__(self, percent: int, message: str) -> None:
        percent = max(0, min(100, int(percent)))
        if percent != self.last:
            self.last = percent
            self.queue.put((percent, message[:255]))

    def _run(self) -> None:
        try:
            while True:
                item = self.queue.get()
                # Only the latest value matters when several piled up.
                while item is not None and not self.queue.empty():
                    item = self.queue.get()
                if item is None:
                    return
                percent, message = item
                ImportJob.objects.filter(pk=self.job_id, status=ImportStatus.RUNNING).update(
                    progress=percent, message=message, updated=timezone.now()
                )
        except Exception:
            logger.exception("Progress of import job %s could not be written", self.job_id)
        finally:
            connections.close_all()

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join(timeout=10)


def import_job_run(*, job: ImportJob, reraise: bool = True) -> ImportJob:
    """Run a queued import job and record the outcome on it. Returns the job as it ended.

    A file or column problem fails the job with its message; row problems are in the report (with
    `atomic` imports writing nothing when any row fails). Anything unexpected fails the job and is
    raised again for the worker's log, or (`reraise=False`, inside a request) logged, so that the
    client still gets its job rather than a server error."""
    claimed = ImportJob.objects.filter(pk=job.pk, status=ImportStatus.QUEUED).update(
        status=ImportStatus.RUNNING, started_at=timezone.now(), message="Starting", updated=timezone.now()
    )
    job.refresh_from_db()
    if not claimed:
        return job  # already run by another delivery of the task
    writer = _ProgressWriter(job.pk)
    try:
        if job.kind == ImportKind.TERRITORIES:
            report, ok = _run_territories(job, writer)
        else:
            report, ok = _run_table(job, writer)
    except ApplicationError as exc:
        writer.close()
        return _end(job, ImportStatus.FAILED, exc.message, report={"errors": exc.errors}, error=exc.message)
    except Exception as exc:
        writer.close()
        job = _end(
            job, ImportStatus.FAILED, "The import failed unexpectedly.", error=f"{type(exc).__name__}: {exc}"
        )
        if reraise:
            raise
        logger.exception("Import job %s failed", job.pk)
        return job
    writer.close()
    message = report.pop("message", "Done")
    return _end(job, ImportStatus.SUCCEEDED if ok else ImportStatus.FAILED, message, report=report)


def _end(
    job: ImportJob, status: str, message: str, *, report: dict | None = None, error: str = ""
) -> ImportJob:
    now = timezone.now()
    fields = {
        "status": status,
        "message": message[:255],
        "error": error if status == ImportStatus.FAILED else "",
        "progress": 100,
        "finished_at": now,
        "data": None,  # the upload is not kept once the import has run
        "updated": now,
    }
    if report is not None:
        fields["report"] = report
    ImportJob.objects.filter(pk=job.pk).update(**fields)
    job.refresh_from_db()
    # A CRM that pushed a large file learns it has been read through its job.finished webhook.
    event_emit(
        JOB_FINISHED,
        {
            "job_id": job.pk,
            "kind": "import",
            "import_kind": job.kind,
            "plan_id": job.plan_id,
            "status": job.status,
            "message": job.message,
            "error": job.error or None,
        },
    )
    return job


def _upload_path(job: ImportJob, directory: str) -> Path:
    # accounts.imports reads paths and tells CSV from XLSX by content; the suffix only sharpens an
    # error message about a broken workbook.
    suffix = Path(job.file_name).suffix.lower()
    path = Path(directory) / f"upload{suffix if suffix.isalnum() or suffix[1:].isalnum() else ''}"
    path.write_bytes(bytes(job.data or b""))
    return path


def _stage_progress(report: Callable[[int, str], None]) -> Callable[[str, int, int], None]:
    def progress(stage: str, done: int, total: int) -> None:
        low, high = _STAGES.get(stage, (0, 99))
        share = done / total if total else 1
        report(
            int(low + (high - low) * min(share, 1)),
            f"{_STAGE_NAMES.get(stage, stage)}: {done:,} of {total:,} rows",
        )

    return progress


def _run_table(job: ImportJob, report: Callable[[int, str], None]) -> tuple[dict, bool]:
    from accounts.imports import load_rows, parse_mapping
    from accounts.services import account_bulk_upsert, rep_bulk_upsert

    options = job.options or {}
    progress = _stage_progress(report)
    mapping = parse_mapping(options["mapping"]) if options.get("mapping") else None
    with tempfile.TemporaryDirectory(prefix="tessera-import-") as directory:
        table, mapped = load_rows(
            _upload_path(job, directory),
            job.kind,
            mapping=mapping,
            sheet=options.get("sheet") or None,
            delimiter=options.get("delimiter") or None,
            progress=progress,
        )
    upsert = account_bulk_upsert if job.kind == ImportKind.ACCOUNTS else rep_bulk_upsert
    result = upsert(
        rows=mapped.rows,
        row_numbers=mapped.row_numbers,
        input_errors=mapped.input_errors,
        atomic=not options.get("partial", False),
        dry_run=bool(options.get("dry_run", False)),
        actor=job.created_by,
        progress=progress,
    )
    problem_rows = [r.as_dict() for r in result.rows if r.errors or r.warnings]
    totals = result.totals
    good = len(result.rows) - result.error_count
    summary = (
        f"created {totals['created']:,}, updated {totals['updated']:,}, "
        f"unchanged {totals['unchanged']:,}, errors {totals['error']:,}"
    )
    if result.committed:
        message = f"Imported {len(result.rows):,} rows: {summary}."
    elif options.get("dry_run") and not result.error_count:
        message = f"Dry run, nothing written; it would have: {summary}."
    elif options.get("dry_run"):
        message = f"Dry run, nothing written; {result.error_count:,} rows have errors."
    else:
        message = f"Nothing was written: {result.error_count:,} of {len(result.rows):,} rows have errors."
        if good and not options.get("partial"):
            message += f" Fix them, or import with 'partial' to write the {good:,} good rows."
    ok = result.committed or (bool(options.get("dry_run")) and not result.error_count)
    if result.committed and result.error_count:
        message = f"Imported the good rows ({summary}); the rows with errors were skipped."
    return (
        {
            "message": message,
            "committed": result.committed,
            "dry_run": bool(options.get("dry_run", False)),
            "totals": totals,
            "rows_total": len(result.rows),
            "description": table.description,
            "columns": {h: t for h, t in mapped.columns.items() if t != "-"},
            "notes": mapped.notes,
            "rows": problem_rows[:REPORT_ROW_LIMIT],
            "rows_omitted": max(0, len(problem_rows) - REPORT_ROW_LIMIT),
        },
        ok,
    )


def _run_territories(job: ImportJob, report: Callable[[int, str], None]) -> tuple[dict, bool]:
    from .geo import plan_territories_import

    options = job.options or {}
    summary = plan_territories_import(
        plan=job.plan,
        data=bytes(job.data or b""),
        file_name=job.file_name,
        actor=job.created_by,
        expected_version=options.get("version"),
        unit_level=options.get("unit_level") or None,
        materialize=options.get("materialize", True),
        progress=report,
    )
    summary["message"] = (
        f"Created {summary['territories_created']:,} territories and assigned "
        f"{summary['units_assigned']:,} units."
    )
    return summary, True
