"""Config texts shared by test modules."""

# The smallest valid config: a bucket and one job.
MINIMAL = """
[s3]
bucket = "ardua-backups"
[jobs.db-upload]
schedule = "15 * * * *"
source = "volume:pg_backups"
prefix = "postgres"
"""
