"""The training side: the loop (:mod:`.trainer`), checkpoints, data-parallel setup, optimiser groups and
schedules, loggers, the typed config schemas, and the probing stage."""
