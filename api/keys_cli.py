"""Create, list and revoke API keys: ``verity-keys create --tenant acme --role submitter --name ci``."""

from __future__ import annotations

import argparse
import json
import sys

from sqlalchemy import select

from core.vocabulary import Role
from db.apikeys import create_key, revoke_key
from db.models import ApiKey
from db.session import session_scope


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="verity-keys", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="create a key; the plaintext is printed once")
    create.add_argument("--name", required=True)
    create.add_argument("--tenant", required=True)
    create.add_argument("--role", choices=[r.value for r in Role], default=Role.SUBMITTER.value)
    revoke = sub.add_parser("revoke", help="revoke a key by its prefix")
    revoke.add_argument("prefix")
    sub.add_parser("list", help="list keys (never their secrets)")
    args = parser.parse_args(argv)

    with session_scope() as session:
        if args.command == "create":
            issued = create_key(session, args.name, args.tenant, args.role)
            print(
                json.dumps(
                    {
                        "key": issued.plaintext,
                        "prefix": issued.record.prefix,
                        "tenant": args.tenant,
                        "role": args.role,
                    }
                )
            )
            return 0
        if args.command == "revoke":
            if not revoke_key(session, args.prefix):
                print(f"no key with prefix {args.prefix}", file=sys.stderr)
                return 1
            print(f"revoked {args.prefix}")
            return 0
        for key in session.scalars(select(ApiKey).order_by(ApiKey.id)):
            state = "revoked" if key.revoked_at else "active"
            print(f"{key.prefix}  {key.tenant:<20} {key.role:<10} {state:<8} {key.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
