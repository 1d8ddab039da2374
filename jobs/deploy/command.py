"""``python -m jobs deploy``: the command line over ``deploy`` and ``destroy``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from handlers.runtime.settings import ENV

from .. import package
from ..options import add_settings, settings_from
from ..schedule import Schedule
from .apply import deploy, destroy
from .catalog import prepare_catalog
from .plan import (
    DEFAULT_BUCKET,
    DEFAULT_NAME,
    Target,
    check_names,
    function_names,
    function_settings,
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "deploy",
        help="deploy the handlers as Lambda functions on EventBridge rules (AWS or LocalStack)",
        description="Create or update the bucket, one least-privilege role, log group, function and "
        "EventBridge rule per handler, all tagged. Credentials and region come from the "
        "standard AWS environment; --endpoint (or AWS_ENDPOINT_URL) for LocalStack.",
    )
    parser.add_argument(
        "--endpoint",
        default=os.environ.get("AWS_ENDPOINT_URL"),
        help="AWS API endpoint, e.g. http://localhost:4566 for LocalStack (default $AWS_ENDPOINT_URL, else AWS)",
    )
    parser.add_argument(
        "--region",
        default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        help="region (default $AWS_REGION, $AWS_DEFAULT_REGION, else us-east-1)",
    )
    parser.add_argument("--bucket", default=DEFAULT_BUCKET, help=f"the store's bucket (default {DEFAULT_BUCKET})")
    parser.add_argument("--prefix", default="", help="key prefix of the store in the bucket (default none)")
    parser.add_argument("--name", default=DEFAULT_NAME, help=f"name of the deployment: prefix of every resource (default {DEFAULT_NAME})")
    parser.add_argument(
        "--artifacts",
        default="build/lambda",
        metavar="DIR",
        help="where `package` wrote the zips (built there when missing; default build/lambda)",
    )
    parser.add_argument(
        "--python",
        default=package.DEFAULT_PYTHON,
        choices=package.RUNTIMES,
        help=f"Lambda runtime's Python (default {package.DEFAULT_PYTHON})",
    )
    parser.add_argument(
        "--every",
        action="append",
        default=[],
        metavar="HANDLER=DURATION",
        help="schedule override, repeatable (default order_tick=1m restock=5m forecast=1h alert=15m)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    parser.add_argument("--destroy", action="store_true", help="remove what deploy made")
    parser.add_argument("--json", action="store_true", help="print the table as JSON")
    add_settings(parser, *(name for name in ENV if name not in ("store_url",)))
    parser.set_defaults(func=cmd_deploy)


def _validate_names(args: argparse.Namespace) -> None:
    """Every name that reaches an ARN, before anything is read (plan.py ``check_names``)."""
    check_names(name=args.name, bucket=args.bucket, prefix=args.prefix, region=args.region)


def _artifacts(args: argparse.Namespace, say: Callable[[str], None]) -> dict[str, package.Artifact]:
    out = Path(args.artifacts)
    found = package.read_built(out, python=args.python)
    if found is None:
        say(f"building the artifacts into {out} (python -m jobs package)")
        found = {a.name: a for a in package.build(out, python=args.python, say=say)}
    return found


def cmd_deploy(args: argparse.Namespace) -> int:
    _validate_names(args)
    schedule = Schedule.parse(args.every)

    def say(line: str) -> None:
        print(f"stockpulse deploy: {line}", file=sys.stderr)

    settings = settings_from(args)
    # the catalog is validated and compiled before any call (one line, exit 2, nothing changed)
    upload = None if args.destroy else prepare_catalog(settings.catalog_path, num_shards=settings.num_shards)
    environment = {} if args.destroy else function_settings(settings, catalog=None if upload is None else upload.reference)
    target = Target(
        name=args.name,
        bucket=args.bucket,
        prefix=args.prefix,
        region=args.region,
        endpoint=args.endpoint,
        schedule=schedule,
        environment=environment,
        catalog_objects={} if upload is None else upload.objects,
    )
    where = target.endpoint or f"AWS {target.region}"
    say(f"{'destroying' if args.destroy else 'deploying'} {target.name} on {where}{' (dry run)' if args.dry_run else ''}")
    if upload is not None:
        say(
            f"catalog {settings.catalog_path}: "
            + (f"{upload.summary}, kept in the store as {upload.reference}" if upload.summary else "in the store")
        )
    if args.destroy:
        rows = destroy(target, dry_run=args.dry_run, say=say)
    else:
        rows = deploy(target, _artifacts(args, say), dry_run=args.dry_run, say=say)
    if args.json:
        print(json.dumps([row.__dict__ for row in rows], indent=2))
    else:
        width = max(len(row.name) for row in rows) if rows else 4
        print(f"{'resource':<12} {'name':<{width}}  result")
        for row in rows:
            print(f"{row.resource:<12} {row.name:<{width}}  {row.action}")
        print(f"store: {target.store_url}" + ("" if args.destroy else f"; functions: {', '.join(function_names(target.name).values())}"))
    return 0
