"""Which retained objects a verify run proves, pure: no I/O, `now` given.

An item is what one proof reads: a dump (a file, or a -Fd directory whose files make one dump)
or one other object. It is due when one of its objects has no proof of the bytes S3 holds now
(never proven, or changed since: another ETag), or when its oldest proof is older than max_age.
Due items go missing-first, then oldest proof first; a run takes them in that order while the
budget lasts, and always the first (a dump larger than the budget is still proven, alone).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from supervisor.record.proofs import Held, Ident, Proof, lookup

DUMP, RECEIPT, FILE = "dump", "receipt", "file"


@dataclass(frozen=True)
class Item:
    kind: str  # DUMP, RECEIPT (a file whose local copy may be compared) or FILE
    destination: str
    key: str  # a dump's key (a directory's prefix), or the object's
    objects: tuple[Held, ...]

    @property
    def size(self) -> int:
        return sum(h.size for h in self.objects)


def last_proven(item: Item, proof_of: Callable[[Held], Proof | None]) -> datetime | None:
    """When every object of the item was last proven (the oldest of them); None when one has
    no proof of the bytes held now (record.proofs.lookup: its own, or a copy's)."""
    times = [p.at if (p := proof_of(h)) else None for h in item.objects]
    return None if None in times or not times else min(t for t in times if t is not None)


def due(items: Iterable[Item], proofs: Mapping[Ident, Proof], now: datetime,
        max_age_s: float) -> list[Item]:
    """The items due, in the order a run proves them: never proven (or changed) first, then
    the oldest proof first; ties by destination and key, so runs are repeatable."""
    found: list[tuple[float, str, str, Item]] = []
    proof_of = lookup(proofs)
    for item in items:
        at = last_proven(item, proof_of)
        if at is None:
            found.append((float("-inf"), item.destination, item.key, item))
        elif (now - at).total_seconds() > max_age_s:
            found.append((at.timestamp(), item.destination, item.key, item))
    return [entry[3] for entry in sorted(found, key=lambda e: e[:3])]


def within(due_items: list[Item], budget: int | None, spent: int = 0,
           ) -> tuple[list[Item], list[Item]]:
    """(what this run proves, what is left for the next): the due items in order while their
    bytes fit the budget (None: no budget, `--all`) with `spent` already read this run; the
    first item of a run is taken whatever its size."""
    if budget is None:
        return list(due_items), []
    for n, item in enumerate(due_items):
        if (n or spent) and spent + item.size > budget:
            return due_items[:n], due_items[n:]
        spent += item.size
    return list(due_items), []
