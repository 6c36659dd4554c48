"""The ``datafly`` command: serve, check, migrate."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from datafly.config import Config, load_config
from datafly.errors import ConfigError
from datafly.tunables import tunables


def _load(path: str) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{path}: {problem}", file=sys.stderr)
        return None


def home_dir() -> str:
    return tunables().home


def cmd_check(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return 1
    print(f"{args.config}: ok ({len(config.sources)} sources, {len(config.integrations)} integrations)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return 1
    try:
        tuned = tunables()
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"environment: {problem}", file=sys.stderr)
        return 1
    import uvicorn

    from datafly.gateway.protocol import gateway_protocol
    from datafly.runtime.app import DataflyApp
    from datafly.runtime.roles import Runtime

    _Server = _server_class()
    logging.basicConfig(
        level=tuned.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    runtime = Runtime(config=config, home=tuned.home, role=args.role)
    app = DataflyApp(runtime)
    server = _Server(
        uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            loop="uvloop",
            # httptools with bounded heads and read deadlines (gateway.max_header_bytes, ...)
            http=gateway_protocol(config.gateway),
            lifespan="on",
            access_log=False,
            log_level="warning",
            timeout_graceful_shutdown=15,
            backlog=4096,
            proxy_headers=False,  # the gateway honours X-Forwarded-For only from gateway.trusted_proxies
            server_header=False,
        )
    )
    logging.getLogger("datafly").info(
        "datafly %s serving on http://%s:%d (home %s)", args.role, args.host, args.port, runtime.home
    )
    server.run()
    return 0 if server.started else 1


def _server_class() -> type:
    import contextlib
    import signal
    from collections.abc import Iterator

    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn re-raises SIGTERM after its graceful shutdown; the contract says exit 0."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server


def cmd_migrate(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return 1
    from datafly.runtime.roles import open_backend

    backend = open_backend(config, home_dir())

    async def run() -> int:
        version = await backend.migrate()
        if version is None:  # migrates when it starts
            await backend.start()
            await backend.close()
        print(f"schema at version {version if version is not None else 'current'}")
        return 0

    return asyncio.run(run())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="datafly", description="Datafly Signal: server-side event delivery")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway, processor, delivery and management")
    serve.add_argument("--config", required=True)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--role", choices=("all", "gateway", "processor", "delivery"), default="all")
    serve.set_defaults(func=cmd_serve)
    check = sub.add_parser("check", help="validate a config file")
    check.add_argument("--config", required=True)
    check.set_defaults(func=cmd_check)
    migrate = sub.add_parser("migrate", help="apply storage schema migrations")
    migrate.add_argument("--config", required=True)
    migrate.set_defaults(func=cmd_migrate)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
