"""The team's roles, as MLflow roles with wildcard grants on every experiment and registered
model: what each member may do is MLflow's own permission check.

- ``reader``: browse the UI, download ``@champion`` (``make champion``, ``make serve``);
- ``member``: also log runs and register versions, and move aliases (EDIT);
- ``maintainer``: also delete runs, versions and aliases, and manage permissions (MANAGE).
"""

from __future__ import annotations

ROLE_PERMISSIONS = {"reader": "READ", "member": "EDIT", "maintainer": "MANAGE"}
WRITER_ROLES = frozenset({"member", "maintainer"})
RESOURCE_TYPES = ("experiment", "registered_model")
# MLflow keeps roles per workspace; with workspaces off, every resource is in this one
WORKSPACE = "default"
# tags that say who did what; the server refuses them naming anyone but the sender, and
# refuses changing or deleting them once set
WHO_TAGS = ("mlflow.user", "registered_by", "promoted_by", "promotion.decided_by")
