"""What runs beside the engine on the machine that serves it: the supervisor and the record of
a deployment's ``runtime.json``.

The local target starts ``python -m deployer.agent.supervisor`` on this machine; the SSH target's
role copies this package, and only this package, to hosts (``opt/deployer/lib/deployer/agent/``)
and runs it with the host's ``/usr/bin/python3``. So it imports the standard library alone and
nothing from deployer outside ``deployer.agent`` (an import-linter contract and
``tests/unit/test_layering.py`` hold that).
"""
