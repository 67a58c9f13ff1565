"""When and how a person is told: the rules and their shared memory, apprise, the Alerter."""
