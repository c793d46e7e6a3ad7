"""m3bert: multi-modal, multi-task music BERT (Greer et al., Scientific Reports 2023), rebuilt as a
Hydra-composed PyTorch suite."""

__version__ = "0.1.0"
