"""verify's steady cost, from the plan itself on a simulated calendar.

postgres-backup-local's layout (KEEP_DAYS 7, KEEP_WEEKS 4, KEEP_MONTHS 6): each day a new dump
of D bytes in last/ and daily/ (an S3 copy of its own: another key), on Sundays in weekly/, on
the 1st in monthly/ (copies of that day's dump, its ETag); older ones deleted by the sync. One
verify a day with max_age 30d and no budget: the bytes read per day in D, averaged over the
last year of a two-year run.

    .venv/bin/python -m benchmarks.verify
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from supervisor.record.proofs import Held, Proof, lookup
from supervisor.verify.plan import DUMP, Item, due, last_proven, within

D = 1  # bytes of one dump: results are in units of D
START = datetime(2025, 1, 1, 3, tzinfo=UTC)


def _held(day: datetime, shared: bool = True) -> list[Item]:
    """What S3 holds on `day`: the dumps of the retained days, one key per folder; a copy
    has the ETag of the dump it links (a server-side copy of the same bytes)."""
    keys: dict[str, str] = {}
    for back in range(7):
        made = day - timedelta(days=back)
        keys[f"last/db-{made:%Y%m%d}.dump"] = keys[f"daily/db-{made:%Y%m%d}.dump"] = f"{made:%F}"
    for back in range(28):
        made = day - timedelta(days=back)
        if made.weekday() == 6:
            keys[f"weekly/db-{made:%Y%V}.dump"] = f"{made:%F}"
    for month in range(6):
        first = (day.replace(day=1) - timedelta(days=31 * month)).replace(day=1)
        keys[f"monthly/db-{first:%Y%m}.dump"] = f"{first:%F}"
    return [Item(DUMP, "s3", k, (Held("s3", k, e if shared else k, D),))
            for k, e in sorted(keys.items())]


def simulate(days: int = 730, max_age_days: float = 30, shared: bool = True) -> float:
    """Bytes read per day, in D; `shared` False: as if each key's proof were its own."""
    proofs: dict = {}
    read: list[int] = []
    for n in range(days):
        day = START + timedelta(days=n)
        todo, _ = within(due(_held(day, shared), proofs, day, max_age_days * 86400), None)
        spent = 0
        for item in todo:  # as the run does: bytes proven this run under another key: not read
            at = last_proven(item, lookup(proofs))
            if at is None or at < day:
                spent += item.size
            for h in item.objects:
                proofs[h.ident] = Proof(True, "", day, h.size)
        read.append(spent)
    last_year = read[-365:]
    return sum(last_year) / len(last_year)


if __name__ == "__main__":
    print(f"steady cost: {simulate():.2f} D read per day (max_age 30d, one dump of D a day, "
          f"{len(_held(START + timedelta(days=400)))} dump objects retained); "
          f"{simulate(shared=False):.2f} D if copies did not share their proof")
