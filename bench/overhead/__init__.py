"""The gateway overhead benchmark behind ``bench/gateway_overhead.py`` (see its docstring and bench/README.md).

Modules: ``load`` (the request and our open/closed-loop load generator, run as a subprocess), ``stats``
(percentiles), ``cpu`` (/proc accounting: the CPU meter), ``processes`` (upstream and gateway processes pinned to
CPUs), ``runner`` (steps, noise re-runs), ``soak`` (RSS over a long run), ``ab`` (A/B against another git ref),
``report`` (tables and targets), ``cli`` (flags and the run).
"""
