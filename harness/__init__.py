"""The project driven from outside, shared by the tests and the benchmarks: a fresh git +
DVC copy of it, its stages' command lines, local ports, a headless browser on the page,
the team stack, and a load tool.

- ``workspace``: a fresh git + DVC repository holding the project
- ``processes``: stage command lines as dvc.yaml writes them; one command run, captured
- ``network``: free loopback ports, waiting for a server to answer
- ``browser``: Debian's chromium through Playwright, and strokes drawn on the page's pad
- ``team_stack``: ``python -m team up`` on free ports in a project copy, stopped afterwards
- ``load``: locust against a served model (``bench/locustfile.py``), its summary
"""
