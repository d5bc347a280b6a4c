"""``deployer server``: the HTTP API (``/api/v1``) over the same state and facade as the CLI.

:mod:`deployer.server.auth` issues and checks tokens (roles ``viewer`` < ``operator`` <
``admin``; only hashes are stored); :mod:`deployer.server.app` builds the FastAPI application;
:mod:`deployer.server.runs` carries out mutating requests as runs in the background, whose
events a client follows over Server-Sent Events.
"""
