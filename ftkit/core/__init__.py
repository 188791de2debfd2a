"""The bottom layer: parameter schemas, recorded results, profiles, hardware and versions.

- :mod:`~ftkit.core.config` — typed parameter sections and each notebook's schema;
- :mod:`~ftkit.core.profiles` — the YAML profiles (smoke, workshop, gpu);
- :mod:`~ftkit.core.results` — ``record``, ``record_table``, ``claim``, ``save_figure``;
- :mod:`~ftkit.core.env` — devices, seeds, memory, bf16 support, progress bars;
- :mod:`~ftkit.core.versions` — the library versions the kit is tested with.

Nothing here imports another ftkit package.
"""
