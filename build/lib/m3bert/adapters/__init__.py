"""Dataset adapters: the paper's datasets, as distributed, to lists of :class:`Track`.

One module per dataset, each with ``tracks(root, **options) -> list[Track]`` (Hydra: ``_target_:
m3bert.adapters.<module>.tracks``). Adapters only walk folders and read metadata; the prepare step decodes audio.

- ``folder``: any folder of audio (optionally a label from each file's folder);
- ``msd``, ``music4all``, ``mtg_jamendo``, ``fma``: pre-training corpora (MTG-Jamendo and FMA also fine-tuning);
- ``gtzan`` (genre), ``ballroom`` (dance style), ``deam`` (arousal/valence), ``rwc`` (instrument), ``mtg_jamendo``
  (mood/theme tags): downstream tasks.

``splits.random_split`` draws the seeded, stratified splits of datasets published without one.
"""
