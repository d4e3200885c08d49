"""``python -m serving.mlserver_app FOLDER``: MLServer as ``mlserver start FOLDER`` runs it,
behind our request checks. Runs in ``.venv-serve``; ``python -m serving`` starts it.

MLServer 1.7 has no switch for what ``serving.guard`` refuses: no body limit (neither has
uvicorn), no Host check, and its model-repository API (index, load, unload) is served on
REST and on gRPC whatever the settings say (its CORS settings only decide which pages may
read answers, not which requests run). So this builds the server the way ``mlserver start``
does, with four changes:

- the repository handlers both servers call refuse every call (gRPC clients get NOT_FOUND,
  as REST clients get 404), except a load during the one control request ``RequestGuard``
  lets through (``CONTROL_REQUEST``, set by the guard of the REST app only; the key is
  ``FOLDER/control.key``, see ``serving.control``): what ``python -m serving reload`` sends;
- ``RequestGuard`` wraps the REST app;
- the gRPC server answers at most ``MAX_CONCURRENT_RPCS`` calls at once, and the calls
  beyond get RESOURCE_EXHAUSTED before their message is read; a connection lasts at
  most ``GRPC_CONNECTION_AGE_MS`` (clients reconnect), its calls then have
  ``GRPC_CONNECTION_GRACE_MS`` to end, so a call that stalls holds its place that long
  at most (``BoundedGRPCServer``);
- a model's registry switches versions without a gap (``OneVersionRegistry``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastapi import status
from grpc import aio
from mlserver.cli.serve import load_settings
from mlserver.context import model_context
from mlserver.errors import MLServerError
from mlserver.grpc import GRPCServer
from mlserver.grpc.dataplane_pb2_grpc import add_GRPCInferenceServiceServicer_to_server
from mlserver.grpc.model_repository import ModelRepositoryServicer
from mlserver.grpc.model_repository_pb2_grpc import add_ModelRepositoryServiceServicer_to_server
from mlserver.grpc.server import DefaultGrpcWorkers
from mlserver.grpc.servicers import InferenceServicer
from mlserver.handlers import ModelRepositoryHandlers
from mlserver.logging import configure_logger, logger
from mlserver.model import MLModel
from mlserver.registry import MultiModelRegistry, SingleModelRegistry
from mlserver.repository import ModelRepository
from mlserver.server import MLServer
from mlserver.settings import ModelSettings, Settings
from mlserver.types import RepositoryIndexRequest, RepositoryIndexResponse
from mlserver.utils import install_uvloop_event_loop

from kernel.cli import positive_whole_number
from serving.control import read_key
from serving.guard import CONTROL_REQUEST, MAX_QUEUED_REQUESTS, REPOSITORY_OFF, RequestGuard

# gRPC's bound on calls at once, its messages (up to 4 MiB each) read: 256 MiB at most. Beyond
# it a call gets RESOURCE_EXHAUSTED at once, gRPC's 503. At 8 (inference runs in one event
# loop, so more add no throughput) 32 load-test clients already met it now and then: a call
# ends a moment after its answer is sent, while the client has its next one under way.
MAX_CONCURRENT_RPCS = 64
# gRPC has no timeout for a call's message to arrive: a client that opens calls and sends
# nothing holds their places until its connection ends, which these bound. An honest
# client's channel reconnects on its own after the server's GOAWAY, its calls unharmed.
GRPC_CONNECTION_AGE_MS = 10_000
GRPC_CONNECTION_GRACE_MS = 5_000


class RepositoryOff(ModelRepositoryHandlers):
    """The model-repository API with every call refused, but a load asked for by the control
    request: the served model stays loaded until its owner switches it."""

    def __init__(self, repository: ModelRepository, model_registry: MultiModelRegistry) -> None:
        super().__init__(repository=repository, model_registry=model_registry)
        self._loading = asyncio.Lock()  # one switch at a time

    async def index(self, payload: RepositoryIndexRequest) -> RepositoryIndexResponse:
        raise MLServerError(REPOSITORY_OFF, status.HTTP_404_NOT_FOUND)

    async def load(self, name: str) -> bool:
        if not CONTROL_REQUEST.get():
            raise MLServerError(REPOSITORY_OFF, status.HTTP_404_NOT_FOUND)
        async with self._loading:
            try:
                # the model's settings as `python -m serving reload` rewrote them; MLServer's
                # own load, which then unloads any version the settings no longer name
                return await super().load(name)
            except MLServerError:
                raise
            except Exception as err:
                lines = str(err).strip().splitlines() or ["(no message)"]
                raise MLServerError(
                    f"{name} could not be loaded ({type(err).__name__}: {lines[0]}); the "
                    "served version stays",
                    status.HTTP_500_INTERNAL_SERVER_ERROR,
                ) from err

    async def unload(self, name: str) -> bool:
        raise MLServerError(REPOSITORY_OFF, status.HTTP_404_NOT_FOUND)


class OneVersionRegistry(SingleModelRegistry):
    """A model's versions, one served at a time, switched without a gap in answers.

    MLServer reloads without a gap only a version already loaded (``_reload_model``: the
    new model is loaded, registered, then the old one unloaded). Another version goes
    through ``_load_model``, which registers the new model before loading it: a higher
    version is the default from then on, not ready, and a request the event loop takes
    before its load returns gets 400 "not ready". (MLflow's runtime loads without yielding
    to the loop, which hides that today; a load that awaits, or a worker pool, would not.)
    Here another version takes the reload path too: loaded while the old one is the default,
    put in its place in one step (no ``await`` between), then the old one unloaded. A load
    that fails leaves the old one serving.
    """

    async def load(self, model_settings: ModelSettings) -> MLModel:
        old = self.default
        version = model_settings.parameters.version if model_settings.parameters else None
        if old is None or old.version is None or version is None or version == old.version:
            return await super().load(model_settings)  # the first load, or MLServer's reload
        new = self._model_initialiser(model_settings)
        with model_context(model_settings):
            for callback in self._on_model_reload:
                new = await callback(old, new)
            try:
                new.ready = await new.load()
                if not new.ready:
                    raise MLServerError(f"version {version} of {new.name} did not load")
            except BaseException:
                for callback in self._on_model_reload:  # the old model's handlers back
                    await callback(new, old)
                raise
            # one step: from here every request finds the new version, and only it
            self._versions.pop(old.version, None)
            self._versions[version] = new
            self._default = new
        with model_context(old.settings):
            old.ready = not await old.unload()
        logger.info(f"Switched model '{new.name}' from version {old.version} to {version}.")
        return new


class OneVersionRegistries(MultiModelRegistry):
    """MLServer's registry of models, each in a ``OneVersionRegistry``."""

    async def load(self, model_settings: ModelSettings) -> MLModel:
        if model_settings.name not in self._models:
            self._models[model_settings.name] = OneVersionRegistry(
                model_settings,
                on_model_load=self._on_model_load,
                on_model_reload=self._on_model_reload,
                on_model_unload=self._on_model_unload,
                model_initialiser=self._model_initialiser,
            )
        return await super().load(model_settings)


class BoundedGRPCServer(GRPCServer):
    """MLServer's gRPC server with at most ``MAX_CONCURRENT_RPCS`` calls at once and
    connections of a bounded age.

    MLServer 1.7 builds its ``grpc.aio`` server in ``_create_server`` with no way to pass
    ``maximum_concurrent_rpcs`` (grpc's own bound: a call beyond it gets RESOURCE_EXHAUSTED
    before its message is read), so this builds it as that method does for the settings
    ``python -m serving`` writes, which turn off the access log, metrics and tracing that
    MLServer adds interceptors for.
    """

    def _create_server(self) -> aio.Server:
        settings = self._settings
        if settings.debug or settings.metrics_endpoint or settings.tracing_server:
            raise RuntimeError(
                "settings.json asks for gRPC debug logs, metrics or tracing, which this server "
                "does not build; write it with `python -m serving`"
            )
        self._inference_servicer = InferenceServicer(
            self._data_plane, self._model_repository_handlers
        )
        self._model_repository_servicer = ModelRepositoryServicer(self._model_repository_handlers)
        self._interceptors = []
        self._server = aio.server(
            ThreadPoolExecutor(max_workers=DefaultGrpcWorkers),
            options=self._get_options(),
            maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS,
        )
        add_GRPCInferenceServiceServicer_to_server(self._inference_servicer, self._server)
        add_ModelRepositoryServiceServicer_to_server(self._model_repository_servicer, self._server)
        self._server.add_insecure_port(f"{settings.host}:{settings.grpc_port}")
        return self._server

    def _get_options(self) -> list[tuple[str, object]]:
        return [
            *super()._get_options(),
            ("grpc.max_connection_age_ms", GRPC_CONNECTION_AGE_MS),
            ("grpc.max_connection_age_grace_ms", GRPC_CONNECTION_GRACE_MS),
        ]


class GuardedMLServer(MLServer):
    """MLServer whose REST and gRPC servers cannot change its models, but for the control
    request of the key's owner, which can load a new version of a model loaded at start,
    and whose gRPC server takes a bounded number of calls at once."""

    def __init__(
        self,
        settings: Settings,
        control_key: str | None = None,
        loadable: Sequence[str] = (),
        max_queued_requests: int = MAX_QUEUED_REQUESTS,
    ) -> None:
        self._control_key = control_key
        self._loadable = tuple(loadable)
        self._max_queued_requests = max_queued_requests
        super().__init__(settings)

    def _create_model_registry(self) -> MultiModelRegistry:
        stock = super()._create_model_registry()  # its hooks: custom handlers, batching
        return OneVersionRegistries(
            on_model_load=stock._on_model_load,
            on_model_reload=stock._on_model_reload,
            on_model_unload=stock._on_model_unload,
            model_initialiser=stock._model_initialiser,
        )

    def _create_servers(self) -> None:
        # MLServer.__init__ builds both servers here from these handlers; the startup load
        # goes to the model registry directly and is unaffected
        self._model_repository_handlers = RepositoryOff(
            repository=self._model_repository, model_registry=self._model_registry
        )
        super()._create_servers()
        self._grpc_server = BoundedGRPCServer(
            self._settings, self._data_plane, self._model_repository_handlers
        )
        self._rest_server._app.add_middleware(
            RequestGuard,
            port=self._settings.http_port,
            control_key=self._control_key,
            loadable=self._loadable,
            max_queued_requests=self._max_queued_requests,
        )


def control_key(folder: str) -> str | None:
    """The key ``python -m serving`` wrote for this server, or None (no reload) with a
    warning when it is missing or others may read it."""
    try:
        return read_key(Path(folder))
    except OSError as err:
        print(
            f"serving: warning: {err.filename}: {err.strerror}; `python -m serving reload` is "
            "refused by this server (start it with `make serve`)",
            file=sys.stderr,
            flush=True,
        )
        return None


async def serve(folder: str, max_queued_requests: int = MAX_QUEUED_REQUESTS) -> None:
    settings, models_settings = await load_settings(folder)
    names = [model.name for model in models_settings]
    server = GuardedMLServer(settings, control_key(folder), names, max_queued_requests)
    await server.start(models_settings)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m serving.mlserver_app")
    parser.add_argument("folder", help="the folder with settings.json and the model's folder")
    parser.add_argument(
        "--max-queued",
        type=positive_whole_number,
        default=MAX_QUEUED_REQUESTS,
        help="requests in hand before the next is refused with 503 (serving.guard)",
    )
    args = parser.parse_args(argv)
    # what `mlserver start` does before it runs the server
    configure_logger()
    install_uvloop_event_loop()
    asyncio.run(serve(args.folder, args.max_queued))


if __name__ == "__main__":
    main()
