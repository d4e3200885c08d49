"""What every entry point of the project shares, and nothing that names a stage's work.

- ``cli``: one-line errors, exit statuses and SIGTERM for every command
- ``signals``: holding SIGTERM and SIGINT while a step must finish or be undone whole
- ``atomic``: outputs written whole or not at all, replaced together
- ``params``: ``params.yaml`` as typed, frozen sections, checked before any work
- ``ports``: whether a loopback port is free for a server about to start
- ``paths``: the project's root, and the pipeline's paths as dvc.yaml's ``vars`` give them
- ``timing``: seconds per phase of a process

Standard library, numpy, PyYAML and pydantic only: importing it costs milliseconds.
"""
