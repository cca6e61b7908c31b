"""Support shared by the test suite and the benchmarks: seeded synthetic traffic and private helper processes.

Never imported by the gateway or the monitors."""
