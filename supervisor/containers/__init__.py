"""One-shot Docker containers (engine) and the rclone ones: spec, labels, commands, log."""
