"""egakit's YAML configs, installed as the package data of ``egakit.configs``
(see :mod:`egakit.config_files`: ``ega configs list``, ``ega configs export DIR``)."""
