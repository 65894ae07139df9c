"""The live dashboard: one local web page showing a swarm at work (``memgang dashboard``).

``state`` folds events and polled state into what the page shows (sans-I/O); ``sources``
adapts memgang's subscription and a poller; ``app`` is the Starlette server streaming the
state to ``static/`` (the page, its script and style: no CDN, works offline). Needs the
``memgang[dashboard]`` extra (starlette, uvicorn) for ``app`` only.
"""
