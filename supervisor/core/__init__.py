"""What every other package builds on and that imports nothing of ours: the shared words (health
states, run results, exit codes), time, the secret-file rule, bounded HTTP, retries, schedules."""
