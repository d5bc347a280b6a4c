"""The ``deployer`` command: parse, call :mod:`deployer.api`, render. No business rules here."""
