"""`bricklm studio` (the web app over a runs folder) and `bricklm serve` (one run's OpenAI-compatible API)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "studio",
        help="a local web app over a folder of runs: live curves, samples, playground, look inside, chat, API",
        description="Serve the studio page and the OpenAI-compatible API for every run in a folder.",
    )
    p.add_argument("--runs", default="runs", metavar="DIR", help="the folder of runs (default: runs)")
    add_address_flags(p)
    p.set_defaults(func=cmd_studio)

    p = sub.add_parser(
        "serve",
        help="an OpenAI-compatible API (and a chat page) for one run",
        description="Serve /v1/models, /v1/completions and /v1/chat/completions for one run.",
    )
    p.add_argument("--run", required=True, metavar="RUN", help="run directory from `bricklm train` or `finetune`")
    add_address_flags(p)
    p.set_defaults(func=cmd_serve)


def add_address_flags(p) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000; 0 picks a free one)")


def cmd_studio(args) -> int:
    from bricklm.studio import serve  # here, not above: other commands don't load the web stack

    serve(args.runs, args.host, args.port)
    return 0


def cmd_serve(args) -> int:
    from bricklm.studio import serve

    serve(args.run, args.host, args.port, single_run=True)
    return 0
