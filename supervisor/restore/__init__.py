"""Backups back out of S3: dumps, receipts, `--at`, the drill and its spot check."""
