"""m3bert: multi-modal, multi-task music BERT (Greer et al., Scientific Reports 2023), rebuilt as a
Hydra-composed PyTorch suite."""

__version__ = "0.1.0"

from m3bert.representations import Representation, Representations  # noqa: E402

__all__ = ["Representation", "Representations", "__version__"]
