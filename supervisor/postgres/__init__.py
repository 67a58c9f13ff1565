"""postgres-backup-local's dumps: their names, formats, client commands, its go-cron."""
