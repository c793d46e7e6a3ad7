"""Plumbing every other package uses, one module per concern: writing files safely (:mod:`.files`), picking
devices and dtypes (:mod:`.devices`) and saving figures (:mod:`.figures`)."""
