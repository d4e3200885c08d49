"""Team mode: the shared services a team's clones log to and push to, on one machine.

``python -m team up | down | status | env`` (``make team-up`` …) starts, stops and
reports PostgreSQL (MLflow's backend store and its users), a SeaweedFS S3 object
store (MLflow's artifacts through the server's proxy, and the DVC remote) and
``mlflow server`` with basic-auth, every listener on 127.0.0.1, their data under
``.team/`` (git-ignored). Any of them can be a team's own instead (``settings``).
"""
