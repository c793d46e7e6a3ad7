"""m3bert: multi-modal, multi-task music BERT (Greer et al., Scientific Reports 2023), rebuilt as a
Hydra-composed PyTorch suite."""

from m3bert.common.version import package_version

__version__ = package_version()
__all__ = ["Representation", "Representations", "__version__"]


def __getattr__(name: str):
    # Imported on first use: `import m3bert` stays light for worker processes that never need torch models.
    if name in ("Representation", "Representations"):
        from m3bert.inference import representations

        return getattr(representations, name)
    raise AttributeError(f"module 'm3bert' has no attribute {name!r}")
