"""`ardua-backup verify`: plan (what is due, pure), prove (one proof), run (a run)."""
