"""bricklm studio: a local web app over a folder of runs, and an OpenAI-compatible API on the same server.

    bricklm studio --runs runs/          # the page: runs, live curves, samples, playground, look inside, chat
    bricklm serve --run runs/blog        # the API (and the chat page) for one run

    from bricklm.studio import serve, create_app
    serve("runs", host="127.0.0.1", port=8000)

Modules: runsdir (the folder: which runs, their status, reads that stay inside it), logs (runs
followed as they train, and the runs table's rows), models (a bounded cache of loaded checkpoints),
engine (generation on worker threads that take turns, cancelled when the client leaves), sampling
(completions and chat replies), inside (attention per head and the logit lens), api (the /v1 routes),
guard (Host check, body limit, headers), app (the ASGI app), server (binding and uvicorn); static/ holds
the page. What a run's files hold is read and checked by bricklm.storage, as every command reads it.
"""

from bricklm.studio.app import create_app
from bricklm.studio.server import serve

__all__ = ["create_app", "serve"]
