import argparse

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from territories.balancing import balance_job_create, balance_job_run
from territories.choices import JobStatus
from territories.models import Plan
from tessera_common.errors import ApplicationError


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


class Command(BaseCommand):
    help = (
        "Balance a plan with the optimizer and write the result as a new draft scenario based on it "
        "(the plan itself is not changed). Runs here, with a progress bar, not on a worker."
    )

    def add_arguments(self, parser):
        parser.add_argument("plan", help="Plan id or exact name")
        parser.add_argument("--mode", choices=["design", "rebalance", "sweep"], default="rebalance")
        parser.add_argument("--level", choices=["accounts", "units"], default="accounts")
        parser.add_argument(
            "--metrics", type=_csv, help="Comma-separated: revenue,potential,workload_hours,count"
        )
        parser.add_argument("--tolerance", help="Allowed deviation, e.g. 0.05, or one per metric: 0.05,0.1")
        size = parser.add_mutually_exclusive_group()
        size.add_argument("--territories", type=int, help="Number of territories (default: the plan's)")
        size.add_argument("--per-rep", action="store_true", help="Anchor each territory at its rep's home")
        parser.add_argument("--keep-locks", action=argparse.BooleanOptionalAction, default=True)
        parser.add_argument("--disruption-weight", type=float, help="Cost of moving (rebalance, sweep)")
        parser.add_argument("--weights", type=_csv, help="Importance per metric, e.g. 1,0.5,0.2")
        parser.add_argument("--sweep-weights", type=_csv, help="Disruption weights to sweep over")
        parser.add_argument("--subtree", help="Balance only under this territory code")
        parser.add_argument("--name", help="Name of the new scenario")
        parser.add_argument("--time-limit", type=float, default=30.0, help="Seconds for the solver")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--user", help="Username recorded as the job's creator and the changes' actor")

    def handle(self, *args, plan, **options):
        found = Plan.objects.filter(pk=int(plan)) if plan.isdigit() else Plan.objects.filter(name=plan)
        if found.count() != 1:
            raise CommandError(f"No single plan matches {plan!r} (give its id or exact name).")
        target = found.get()
        actor = None
        if options["user"]:
            actor = get_user_model().objects.filter(username=options["user"]).first()
            if actor is None:
                raise CommandError(f"No user named {options['user']!r}.")
        parameters = {
            "mode": options["mode"],
            "level": options["level"],
            "keep_locks": options["keep_locks"],
            "per_rep": options["per_rep"],
            "time_limit": options["time_limit"],
            "seed": options["seed"],
        }
        for key in (
            "metrics",
            "territories",
            "disruption_weight",
            "weights",
            "sweep_weights",
            "subtree",
            "name",
        ):
            if options[key] is not None:
                parameters[key] = options[key]
        if options["tolerance"] is not None:
            tolerance = _csv(options["tolerance"])
            parameters["tolerance"] = tolerance[0] if len(tolerance) == 1 else tolerance
        try:
            job = balance_job_create(plan=target, parameters=parameters, actor=actor, enqueue=False)
        except ApplicationError as exc:
            details = "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in exc.errors.items())
            raise CommandError(exc.message + (f" ({details})" if details else "")) from None
        with tqdm(
            total=100, desc=f"Balancing {target.name}", unit="%", disable=options["verbosity"] < 1
        ) as bar:

            def progress(percent: int, message: str) -> None:
                bar.set_postfix_str(message[:60])
                bar.update(max(0, percent - bar.n))

            job = balance_job_run(job=job, progress=progress)
        if job.status == JobStatus.FAILED:
            raise CommandError(f"Balance job {job.pk} failed: {job.error}")
        if job.status == JobStatus.CANCELLED:
            raise CommandError(f"Balance job {job.pk} was cancelled.")
        self._summary(job)

    def _summary(self, job) -> None:
        result = job.result
        names = result["metric_names"]
        write = self.stdout.write
        write(f"Job {job.pk}: wrote plan {job.produced_plan_id} '{job.produced_plan.name}'")
        write(
            f"{result['entities']} {result['level']}, {result['reassigned_count']} got a new owner; "
            f"{'within' if result['within_tolerance'] else 'NOT within'} tolerance; "
            f"compactness {result['compactness_ratio']} × k-means; {result['elapsed_seconds']} s"
        )
        header = f"{'territory':<14}" + "".join(f"{n[:16]:>18}{'dev':>8}" for n in names)
        write(header)
        for row in result["territories"]:
            cells = "".join(
                f"{row['totals'][n] or 0:>18,.0f}{(row['deviation'][n] or 0) * 100:>7.1f}%" for n in names
            )
            write(f"{row['code'][:14]:<14}{cells}")
        write(
            "worst deviation: "
            + ", ".join(f"{n} {(result['worst_deviation'][n] or 0) * 100:.1f}%" for n in names)
            + "; moved share: "
            + ", ".join(f"{n} {(result['moved_share'][n] or 0) * 100:.1f}%" for n in names)
        )
        for point in result.get("sweep") or []:
            write(
                f"sweep w={point['disruption_weight']}: moved {(point['moved_share'] or 0) * 100:.1f}%, "
                f"worst deviation {(point['worst_deviation'] or 0) * 100:.1f}%, "
                f"compactness {point['compactness_ratio']}"
            )
