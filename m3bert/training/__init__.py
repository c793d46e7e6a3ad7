"""The training side: the loop (:mod:`.trainer`), random streams and seeding, data-parallel setup, optimiser
groups and schedules, loggers, the typed config schemas, and the probing stage. The checkpoint format the loop
writes lives below it, in :mod:`m3bert.common.checkpoints`."""
