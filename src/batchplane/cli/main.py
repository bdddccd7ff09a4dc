"""The `batchplane` command: run the stack or one service, render the gateway, administer."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from batchplane.cli import admin
from batchplane.core import tracing
from batchplane.core.logs import configure_logging
from batchplane.core.runtime import run_service
from batchplane.core.settings import Settings, SettingsError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="batchplane", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run the whole local stack (broker, services, gateway)")
    serve = commands.add_parser("serve", help="run one service")
    serve.add_argument("service", choices=["intake", "processor", "notifier"])
    db = commands.add_parser("db", help="database schema")
    db.add_argument("action", choices=["upgrade"])
    gateway = commands.add_parser("gateway", help="Envoy configuration")
    gateway.add_argument(
        "action",
        choices=["render", "run", "openapi"],
        help="render: print or write; run: render, exec Envoy; openapi: the OpenAPI document",
    )
    gateway.add_argument("--out", type=Path, default=None, help="file to write (stdout if unset)")
    admin.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"batchplane: {exc}", file=sys.stderr)
        return 2
    service = args.service if args.command == "serve" else args.command
    configure_logging(settings.log_level, fmt=settings.log_format, service=service)
    if args.command == "run":
        from batchplane.local.stack import run_stack

        return run_stack(settings)
    if args.command == "serve":
        return _serve(args.service, settings)
    if args.command == "db":
        from batchplane.db.migrate import upgrade

        upgrade(settings.effective_database_url)
        print(json.dumps({"database": "upgraded"}))
        return 0
    if args.command == "gateway":
        return _gateway(settings, args.action, args.out)
    return _admin(args, settings)


def _serve(service: str, settings: Settings) -> int:
    with tracing.installed(settings, f"batchplane-{service}"):
        _serve_traced(service, settings)
    return 0


def _serve_traced(service: str, settings: Settings) -> None:
    if service == "intake":
        from batchplane.intake.server import run as run_intake

        run_service(lambda stop: run_intake(settings, stop))
    elif service == "processor":
        from batchplane.processor.server import run as run_processor

        run_service(lambda stop: run_processor(settings, stop))
    else:
        from batchplane.notifier.server import run as run_notifier

        run_service(lambda stop: run_notifier(settings, stop))


def _gateway(settings: Settings, action: str, out: Path | None) -> int:
    import yaml

    from batchplane.gateway import config

    if action == "run":
        # Containers: render for this environment, then become Envoy (same PID).
        path = config.write(settings, out or settings.state_dir / "envoy.yaml")
        command = config.envoy_command(path, log_level="info")
        os.execv(command[0], command)  # noqa: S606 - a fixed binary, no shell
    if action == "openapi":
        document = json.dumps(config.openapi_document(settings), indent=2)
        if out is None:
            print(document)
        else:
            out.write_text(document + "\n")
        return 0
    if out is None:
        print(yaml.safe_dump(config.render(settings), sort_keys=False))
    else:
        config.write(settings, out)
    return 0


def _admin(args: argparse.Namespace, settings: Settings) -> int:
    try:
        result = asyncio.run(admin.run(args, settings))
    except admin.AdminError as exc:
        print(json.dumps({"error": str(exc)}))
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
