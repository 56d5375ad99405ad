"""`serve`: the search web page and its JSON API (`[web]` extra), on uvicorn."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from utilities.cli.options import common_options, open_engine, positive


def register(commands: argparse._SubParsersAction, model: argparse.ArgumentParser) -> None:
    """Add the `serve` sub-parser to `commands`."""
    serve = commands.add_parser(
        "serve", parents=[common_options(), model], help="the search web page and JSON API ([web] extra)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s: this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="default %(default)s")
    serve.add_argument("--max-upload-mb", type=float, default=20, help="largest accepted upload (default 20)")
    serve.add_argument(
        "--allowed-hosts",
        default="",
        help="comma-separated host names the server answers to besides localhost and --host (e.g. photos.example.org)",
    )
    serve.add_argument(
        "--max-waiting-uploads",
        type=positive,
        default=8,
        help="searches by upload that may wait for the model at once; more get a 503 (default %(default)s)",
    )
    serve.add_argument(
        "--token-file",
        type=Path,
        help="require the access token in this file (default: $UTILITIES_WEB_TOKEN if set, else no token)",
    )
    serve.set_defaults(run=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the page and the API until interrupted (warning first when bound beyond this machine)."""
    from utilities.errors import ImageSearchError

    try:
        import uvicorn
    except ImportError as error:
        raise ImageSearchError(f"serve needs uvicorn ({error}): pip install 'milvus-image-similarity[web]'") from error
    from utilities.web.app import create_app
    from utilities.web.guards import TOKEN_ENV, allowed_hosts, is_loopback, read_token

    token = read_token(args.token_file)
    if not is_loopback(args.host):
        print(
            f"warning: serving on {args.host}, beyond this machine: anyone who can reach port {args.port} sees every "
            "indexed image"
            + ("" if token else f"; set an access token ({TOKEN_ENV} or --token-file) to require one")
            + ". Add the names clients use with --allowed-hosts.",
            file=sys.stderr,
            flush=True,
        )
    hosts = allowed_hosts(args.host, [name for name in args.allowed_hosts.split(",") if name.strip()])
    app = create_app(
        open_engine(args),
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        hosts=hosts,
        token=token,
        max_waiting_uploads=args.max_waiting_uploads,
    )
    shown = f"http://{args.host}:{args.port}/" + ("  (open it once with ?token=YOUR_TOKEN)" if token else "")
    print(f"serving collection {args.collection!r} at {shown} (Ctrl-C stops)", flush=True)
    # no access log when a token is set: the first request's query string holds it
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="info" if args.verbose else "warning",
        access_log=bool(args.verbose and not token),
    )
    return 0
