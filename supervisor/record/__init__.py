"""What every run and verdict leaves behind: the sinks (ledger, metrics, heartbeat, journal)."""
