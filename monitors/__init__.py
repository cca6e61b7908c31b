"""The monitors worker: judges and drift over sampled traffic."""
