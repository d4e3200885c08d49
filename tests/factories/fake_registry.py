"""A registered model in memory, for the champion rule (``tracking.champion.ModelRegistry``).

Each operation can be made to fail, to see what the caller does when the store does."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from kernel.cli import CommandError


@dataclass
class FakeRegistry:
    versions: dict[str, dict[str, str]] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    models: dict[str, bytes] = field(default_factory=dict)  # by version
    model_tag_values: dict[str, str] = field(default_factory=dict)  # the registered model's
    # an operation's name -> what it raises, when called with these arguments
    failures: dict[str, Callable[..., Exception | None]] = field(default_factory=dict)
    calls: list[tuple[str, tuple]] = field(default_factory=list)

    def _call(self, operation: str, *args: object) -> None:
        self.calls.append((operation, args))
        fails = self.failures.get(operation)
        error = fails(*args) if fails else None
        if error is not None:
            raise error

    def alias_target(self, alias: str) -> str | None:
        self._call("alias_target", alias)
        return self.aliases.get(alias)

    def set_alias(self, alias: str, version: str) -> None:
        self._call("set_alias", alias, version)
        self.aliases[alias] = version

    def version_tags(self, version: str) -> dict[str, str]:
        self._call("version_tags", version)
        return dict(self.versions[version])

    def all_version_tags(self) -> dict[str, dict[str, str]]:
        self._call("all_version_tags")
        return {version: dict(tags) for version, tags in self.versions.items()}

    def tag_version(self, version: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():  # one by one, as MLflow sets them
            self._call("tag_version", version, key)
            self.versions[version][key] = value

    def version_onnx_bytes(self, version: str) -> bytes:
        self._call("version_onnx_bytes", version)
        if version not in self.models:
            raise CommandError(f"models:/fake/{version}: no such artifact")
        return self.models[version]

    def delete_alias(self, alias: str) -> None:
        self._call("delete_alias", alias)
        self.aliases.pop(alias, None)

    def model_tags(self) -> dict[str, str]:
        self._call("model_tags")
        return dict(self.model_tag_values)

    def set_model_tag(self, key: str, value: str) -> None:
        self._call("set_model_tag", key)
        self.model_tag_values[key] = value

    def delete_model_tag(self, key: str) -> None:
        self._call("delete_model_tag", key)
        del self.model_tag_values[key]

    def register(self, version: str, tags: Mapping[str, str]) -> None:
        """A handed-off version with ``tags`` (what the hand-off leaves on it)."""
        self.versions[version] = {**tags, "handed_off": "true"}


@dataclass(frozen=True)
class FakeDrawnSet:
    """A drawn test set whose accuracy per model is given: models are bytes named by it."""

    digest: str
    accuracies: Mapping[bytes, float]

    def accuracy(self, model_bytes: bytes) -> float:
        return self.accuracies[model_bytes]
