"""The Grafana dashboards of llmops-stack, built with grafana-foundation-sdk.

``panels`` holds the shared builders (panel specs, queries, thresholds, variables, the dashboard frame); each
``*_dashboard`` module describes one dashboard, mostly as data; ``render`` serialises them and is the CLI behind
``grafana/generate.py``.
"""
