"""Plumbing every other package uses, one module per concern: writing files safely (:mod:`.files`), the checkpoint
format (:mod:`.checkpoints`), picking devices and dtypes (:mod:`.devices`), saving figures (:mod:`.figures`),
composing configs (:mod:`.configs`), user errors (:mod:`.errors`) and the package version (:mod:`.version`)."""
