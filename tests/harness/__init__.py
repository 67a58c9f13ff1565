"""Test harness for ardua-backup: private dockerd, images, S3 and PostgreSQL servers."""
