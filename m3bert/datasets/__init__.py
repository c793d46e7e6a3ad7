"""Dataset adapters: the paper's datasets, as distributed, to lists of :class:`Track`."""
