"""manage.py import_accounts FILE: create or update accounts from a CSV or XLSX file."""

from __future__ import annotations

import csv
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from accounts.imports import load_rows, parse_mapping, read_mapping_file
from accounts.services import ERROR, BulkResult, account_bulk_upsert
from tessera_common.errors import ApplicationError

SCREEN_LINES = 50
_STAGES = {"read": "Reading", "validate": "Checking rows", "write": "Writing"}


class _ProgressBars:
    """One tqdm bar per stage of the upsert, fed by the service's progress(stage, done, total)."""

    def __init__(self, disable: bool | None):
        self.disable = disable
        self.bars: dict[str, tqdm] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(
                total=total, desc=_STAGES.get(stage, stage), unit=" rows", disable=self.disable
            )
        bar.total = max(total, done)  # a sheet's stated size can be short of the truth
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


class Command(BaseCommand):
    help = (
        "Create or update accounts from a CSV or XLSX file, matched by external id. All or nothing "
        "unless --partial; prints every row's problems (row number, field, message)."
    )
    kind = "accounts"
    upsert = staticmethod(account_bulk_upsert)
    map_example = "'Acct #=external_id,Billing Zip=postal_code,Tier=attributes.tier,Notes=-'"

    def add_arguments(self, parser):
        parser.add_argument("file", help="A .csv (any of , ; tab |) or .xlsx file; row 1 is the header.")
        parser.add_argument(
            "--map",
            action="append",
            default=[],
            metavar="COLUMN=FIELD,...",
            help=f"Say which column fills which field, e.g. {self.map_example}. '-' skips a column.",
        )
        parser.add_argument("--map-file", help="A text file with one 'Column name = field' per line.")
        parser.add_argument("--sheet", help="The workbook sheet to read (default: the first).")
        parser.add_argument(
            "--delimiter", help="The CSV delimiter, when detection gets it wrong ('\\t' for tab)."
        )
        parser.add_argument(
            "--partial", action="store_true", help="Write the good rows even if some rows have errors."
        )
        parser.add_argument("--dry-run", action="store_true", help="Check everything, write nothing.")
        parser.add_argument("--report", metavar="FILE.csv", help="Write every error and warning to this CSV.")

    def handle(self, *args, **options):
        report = None
        if options["report"]:
            # Opened first, so that a bad path stops us before anything is written.
            try:
                # utf-8-sig so that Excel, where planners open it, shows accented names correctly.
                report = open(options["report"], "w", newline="", encoding="utf-8-sig")  # noqa: SIM115
            except OSError as exc:
                raise CommandError(f"Cannot write the report {options['report']}: {exc.strerror}.") from None
        try:
            self._import(options, report)
        finally:
            if report:
                report.close()

    def _import(self, options, report) -> None:
        path = Path(options["file"])
        quiet = options["verbosity"] == 0
        bars = _ProgressBars(disable=True if quiet else None)  # None: a bar on a terminal, none in a log
        try:
            mapping = read_mapping_file(options["map_file"]) if options["map_file"] else {}
            for text in options["map"]:
                mapping.update(parse_mapping(text))
            table, mapped = self._read(path, mapping, options, bars)
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        finally:
            bars.close()

        if not quiet:
            self.stdout.write(f"Read {len(mapped.rows):,} rows from {path.name} ({table.description}).")
            used = ", ".join(f"{h} → {t}" for h, t in mapped.columns.items() if t != "-")
            self.stdout.write(f"Columns: {used}.")
            for note in mapped.notes:
                self.stdout.write(self.style.WARNING(f"Note: {note}"))

        bars = _ProgressBars(disable=True if quiet else None)
        try:
            result = self.upsert(
                rows=mapped.rows,
                row_numbers=mapped.row_numbers,
                input_errors=mapped.input_errors,
                atomic=not options["partial"],
                dry_run=options["dry_run"],
                progress=bars,
            )
        finally:
            bars.close()

        lines = self._report_lines(result)
        if report:
            writer = csv.writer(report)
            writer.writerow(["row", "external_id", "status", "level", "field", "message"])
            writer.writerows(lines)
        self._print(result, lines, options)

        good = len(result.rows) - result.error_count
        if result.error_count and (not result.committed or not good):
            message = f"Nothing was written: {result.error_count:,} of {len(result.rows):,} rows have errors."
            if good and not options["partial"]:
                message += f" Fix them, or use --partial to write the {good:,} good rows."
            raise CommandError(message)

    def _read(self, path: Path, mapping: dict, options, bars: _ProgressBars):
        """(table, mapped rows) of the file; subclasses for other kinds of rows change only this."""
        return load_rows(
            path,
            self.kind,
            mapping=mapping,
            sheet=options["sheet"],
            delimiter=options["delimiter"],
            progress=bars,
        )

    def _report_lines(self, result: BulkResult) -> list[tuple]:
        """(row, external id, status, level, field, message), errors first, each level by row."""
        lines = []
        for level, attr in (("error", "errors"), ("warning", "warnings")):
            for row in result.rows:
                for field, messages in getattr(row, attr).items():
                    lines.extend((row.row, row.external_id, row.status, level, field, m) for m in messages)
        return lines

    def _print(self, result: BulkResult, lines: list[tuple], options) -> None:
        quiet = options["verbosity"] == 0
        if quiet:
            # --verbosity 0 is for cron: silent when all went well, the errors when not.
            lines = [line for line in lines if line[3] == "error"]
            if not lines:
                return
        totals = result.totals
        summary = (
            f"created {totals['created']:,}, updated {totals['updated']:,}, "
            f"unchanged {totals['unchanged']:,}, errors {totals[ERROR]:,}"
        )
        out = self.stdout
        if result.committed:
            out.write(self.style.SUCCESS(f"Done: {summary}."))
        elif options["dry_run"]:
            out.write(f"Dry run, nothing written; it would have: {summary}.")
        else:
            out.write(f"Not written; it would have: {summary}.")
        for row, ext, _status, level, field, message in lines[:SCREEN_LINES]:
            style = self.style.ERROR if level == "error" else self.style.WARNING
            out.write(style(f"  row {row} ({ext or 'no id'}) {field}: {message}"))
        if len(lines) > SCREEN_LINES:
            where = (
                f"see {options['report']}" if options["report"] else "use --report FILE.csv for all of them"
            )
            out.write(f"  … and {len(lines) - SCREEN_LINES:,} more; {where}.")
        elif options["report"] and lines:
            out.write(f"  Report written to {options['report']}.")
