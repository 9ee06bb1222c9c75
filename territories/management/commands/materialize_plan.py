from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from territories.models import Plan
from territories.services import plan_materialize
from tessera_common.errors import ApplicationError


class Command(BaseCommand):
    help = "Rebuild a plan's account assignments from its locks, families, rules and geography."

    def add_arguments(self, parser):
        parser.add_argument("plan", help="Plan id or exact name")

    def handle(self, *args, plan, **options):
        found = Plan.objects.filter(pk=int(plan)) if plan.isdigit() else Plan.objects.filter(name=plan)
        if found.count() != 1:
            raise CommandError(f"No single plan matches {plan!r} (give its id or exact name).")
        target = found.get()
        with tqdm(
            total=100, desc=f"Materializing {target.name}", unit="%", disable=options["verbosity"] < 1
        ) as bar:

            def progress(percent: int, message: str) -> None:
                bar.set_postfix_str(message)
                bar.update(max(0, percent - bar.n))

            try:
                result = plan_materialize(plan=target, progress=progress)
            except ApplicationError as exc:
                raise CommandError(exc.message) from None
        by_source = ", ".join(f"{k} {v}" for k, v in sorted(result.by_source.items()))
        self.stdout.write(
            f"{result.accounts} accounts in {result.seconds:.2f} s: {by_source}; "
            f"unassigned {result.unassigned}; moved {result.moved}"
        )
