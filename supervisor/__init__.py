"""ardua-backup: mirrors Ardua Books' backups to S3 and proves they are there."""
