"""Trained encoders for users: the model-folder format and its one loader (:mod:`.pretrained`), and audio in,
every layer's states out (:mod:`.representations`)."""
