"""What every management handler works with, built once per process."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from datafly.management.auth import Authenticator, Principal
from datafly.management.integration_store import IntegrationStore
from datafly.management.secrets import SecretBox
from datafly.management.source_store import SourceStore
from datafly.runtime.roles import Runtime

__all__ = ["Context", "context_of", "principal_of"]


@dataclass
class Context:
    runtime: Runtime
    box: SecretBox
    auth: Authenticator
    integrations: IntegrationStore
    sources: SourceStore

    async def start(self) -> None:
        """The runtime's startup hook: first admin, then UI-managed sources and integrations."""
        await self.auth.ensure_admin()
        await self.sources.load()
        await self.integrations.load()


def context_of(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


def principal_of(request: Request) -> Principal:
    principal: Principal = request.state.principal
    return principal
