"""The ``smithers`` command line: ``main`` builds the parser from every plugin's commands.

Core's own commands (``plugins``, ``up``, ``runs``, ``server``, ``gateway``) live in one module
each and arrive through the ``smithers_cli_commands`` hook like any plugin's (``core.cli``).
"""
