"""The config file: every key declared once (keys), read into immutable dataclasses (load)."""
