"""`neuron-interp`: the project's command.

    neuron-interp serve [GUNICORN ARGS...]   the service under gunicorn with gunicorn.conf.py
    neuron-interp dev [--host H] [--port P]  Flask's own server, for development
    neuron-interp batch INPUT OUTPUT [...]   explain and score every latent of a dictionary
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# gunicorn.conf.py sits beside server.py at the project's root.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def serve(extra: list[str]) -> int:
    from gunicorn.app.wsgiapp import run

    config = PROJECT_ROOT / "gunicorn.conf.py"
    sys.argv = ["gunicorn", "-c", str(config), *extra, "server:app"]
    os.chdir(PROJECT_ROOT)
    return run() or 0


def dev(host: str, port: int) -> int:
    from server import create_app

    create_app().run(host=host, port=port)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="neuron-interp", description=__doc__.split("\n")[1].strip())
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the service under gunicorn (extra arguments go to gunicorn)")
    development = commands.add_parser("dev", help="run Flask's development server")
    development.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    development.add_argument("--port", type=int, default=int(os.environ.get("PORT", "5000")))
    from cli import batch

    batch.add_arguments(commands.add_parser("batch", help="explain and score every latent of INPUT into OUTPUT"))
    args, extra = parser.parse_known_args(argv)
    if args.command == "batch":
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return batch.main(args)
    if args.command == "serve":
        return serve(extra)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return dev(args.host, args.port)


if __name__ == "__main__":
    sys.exit(main())
