"""`bricklm studio` (the web app over a runs folder) and `bricklm serve` (one run's OpenAI-compatible API)."""

from __future__ import annotations

from bricklm.errors import UserError

ENV = "BRICKLM_API_KEY"  # bricklm.studio.auth.ENV, named here so that --help doesn't load the web stack


def register(sub) -> None:
    p = sub.add_parser(
        "studio",
        help="a local web app over a folder of runs: live curves, samples, playground, look inside, chat, API",
        description="Serve the studio page and the OpenAI-compatible API for every run in a folder.",
    )
    p.add_argument("--runs", default="runs", metavar="DIR", help="the folder of runs (default: runs)")
    add_server_flags(p)
    p.set_defaults(func=cmd_studio)

    p = sub.add_parser(
        "serve",
        help="an OpenAI-compatible API (and a chat page) for one run",
        description="Serve /v1/models, /v1/completions and /v1/chat/completions for one run.",
    )
    p.add_argument("--run", required=True, metavar="RUN", help="run directory from `bricklm train` or `finetune`")
    add_server_flags(p)
    p.set_defaults(func=cmd_serve)


def add_server_flags(p) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000; 0 picks a free one)")
    key = p.add_argument_group(
        "who may use it",
        f"Beyond 127.0.0.1 the server needs an API key: from ${ENV}, --api-key-file or --api-key. Clients send "
        "it as `Authorization: Bearer KEY` (the OpenAI client's api_key); a browser opens /?key=KEY once.",
    )
    key.add_argument("--api-key-file", metavar="FILE", help="read the API key from FILE (whitespace around it ignored)")
    key.add_argument(
        "--api-key",
        metavar="KEY",
        help=f"the API key itself; other users of this machine can read it in `ps`: prefer ${ENV} or --api-key-file",
    )
    key.add_argument(
        "--no-auth",
        action="store_true",
        help="serve beyond 127.0.0.1 without a key: anyone who can reach the port can read your runs and generate",
    )
    key.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests addressed to NAME (a DNS name or address clients use for this machine; "
        "repeatable). Loopback names are always answered, and beyond loopback this machine's own names and addresses",
    )
    p.add_argument("--max-live", type=int, metavar="N", help="live streams (open pages) at once (default: 32)")
    p.add_argument(
        "--max-copied",
        metavar="N",
        help="the privacy guard for sharing: no response (completions or chat, streamed or not) holds a span of more "
        "than N consecutive characters of the training text, counting a span that starts in the prompt; generation "
        "steers away or stops (finish_reason content_filter). N must be at least the length held-out text matches "
        "by chance (the copying index's chance_length); a run without its copying index is refused. Guards against "
        "verbatim recitation, not paraphrase",
    )


def server_options(args) -> dict:
    return {
        "api_key": args.api_key,
        "api_key_file": args.api_key_file,
        "no_auth": args.no_auth,
        "allow_hosts": args.allow_host,
        **({"max_live": args.max_live} if args.max_live is not None else {}),
        "max_copied": max_copied(args.max_copied),
    }


def max_copied(text: str | None) -> int | None:
    """--max-copied as a number of characters; a UserError (one line) for anything else."""
    if text is None:
        return None
    if not text.strip().isdigit() or int(text) < 1:
        raise UserError(f"--max-copied takes a number of characters (1 or more), got {text!r}")
    return int(text)


def cmd_studio(args) -> int:
    from bricklm.studio import serve  # here, not above: other commands don't load the web stack

    serve(args.runs, args.host, args.port, **server_options(args))
    return 0


def cmd_serve(args) -> int:
    from bricklm.studio import serve

    serve(args.run, args.host, args.port, single_run=True, **server_options(args))
    return 0
