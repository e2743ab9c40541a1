"""bricklm studio: a local web app over a folder of runs, and an OpenAI-compatible API on the same server.

    bricklm studio --runs runs/          # the page: runs, live curves, samples, playground, look inside, chat
    bricklm serve --run runs/blog        # the API (and the chat page) for one run

    from bricklm.studio import serve, create_app
    serve("runs", host="127.0.0.1", port=8000)
    serve("runs", host="0.0.0.0", api_key=key)     # beyond loopback: a key (or no_auth=True)

Modules: runsdir (the folder: which runs, their status, reads that stay inside it), logs (runs
followed as they train, and the runs table's rows), live (the page's live streams, one read per run
however many follow it), models (a bounded cache of loaded checkpoints), engine (generation on
worker threads that take turns, cancelled when the client leaves), sampling (completions and chat
replies), inside (attention per head and the logit lens), api (the /v1 routes), hosts (the Host
names to answer, parsed strictly), auth (the API key), guard (Host, Origin and key checks, body
limit, headers), app (the ASGI app), connections (uvicorn's HTTP protocol with a header deadline),
server (who may reach it, binding, uvicorn); static/ holds the page. What a run's files hold is
read and checked by bricklm.storage, as every command reads it.
"""

from bricklm.studio.app import create_app
from bricklm.studio.server import serve

__all__ = ["create_app", "serve"]
