"""`ardua-backup run`: the scheduler loop, its health reads, sd_notify, the real wiring."""
