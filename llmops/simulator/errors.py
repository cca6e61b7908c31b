"""The simulator's own error type (the simulators import nothing from the gateway's configuration)."""

from __future__ import annotations


class SimulatorSettingsError(ValueError):
    """Settings that ``llmops simulate`` cannot run with: a bad flag or value, an unreadable ``--script`` file, a
    port that cannot be bound. The message names the flag to fix; the command line prints it as one line and exits
    with status 2."""
