"""``python -m serving.mlserver_app FOLDER``: MLServer as ``mlserver start FOLDER`` runs it,
behind our request checks. Runs in ``.venv-serve``; ``python -m serving`` starts it.

MLServer 1.7 has no switch for what ``serving.guard`` refuses: no body limit (neither has
uvicorn), no Host check, and its model-repository API (index, load, unload) is served on
REST and on gRPC whatever the settings say (its CORS settings only decide which pages may
read answers, not which requests run). So this builds the server the way ``mlserver start``
does, with two changes: the repository handlers both servers call refuse every call (gRPC
clients get NOT_FOUND, as REST clients get 404), and ``RequestGuard`` wraps the REST app.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

from fastapi import status
from mlserver.cli.serve import load_settings
from mlserver.errors import MLServerError
from mlserver.handlers import ModelRepositoryHandlers
from mlserver.logging import configure_logger
from mlserver.server import MLServer
from mlserver.types import RepositoryIndexRequest, RepositoryIndexResponse
from mlserver.utils import install_uvloop_event_loop

from serving.guard import REPOSITORY_OFF, RequestGuard


class RepositoryOff(ModelRepositoryHandlers):
    """The model-repository API with every call refused: the served model stays loaded."""

    async def index(self, payload: RepositoryIndexRequest) -> RepositoryIndexResponse:
        raise MLServerError(REPOSITORY_OFF, status.HTTP_404_NOT_FOUND)

    async def load(self, name: str) -> bool:
        raise MLServerError(REPOSITORY_OFF, status.HTTP_404_NOT_FOUND)

    async def unload(self, name: str) -> bool:
        raise MLServerError(REPOSITORY_OFF, status.HTTP_404_NOT_FOUND)


class GuardedMLServer(MLServer):
    """MLServer whose REST and gRPC servers cannot change the models it loaded at start."""

    def _create_servers(self) -> None:
        # MLServer.__init__ builds both servers here from these handlers; the startup load
        # goes to the model registry directly and is unaffected
        self._model_repository_handlers = RepositoryOff(
            repository=self._model_repository, model_registry=self._model_registry
        )
        super()._create_servers()
        self._rest_server._app.add_middleware(RequestGuard, port=self._settings.http_port)


async def serve(folder: str) -> None:
    settings, models_settings = await load_settings(folder)
    await GuardedMLServer(settings).start(models_settings)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m serving.mlserver_app")
    parser.add_argument("folder", help="the folder with settings.json and the model's folder")
    args = parser.parse_args(argv)
    # what `mlserver start` does before it runs the server
    configure_logger()
    install_uvloop_event_loop()
    asyncio.run(serve(args.folder))


if __name__ == "__main__":
    main()
