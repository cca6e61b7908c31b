"""The versioned judge prompt files, ``<name>_v<N>.md``: data only, read by :mod:`monitors.judges.prompting`."""
