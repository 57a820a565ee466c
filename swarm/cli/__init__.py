"""The `swarm` command line, laid out as rq's `cli/` package is: `helpers` holds what every
command shares (the `--redis`/`--swarm` options, the connection, the one error path), each
other module one family of commands, `app` the group. Commands are thin: parse, call the
library, print. Nothing outside this package imports it.
"""

from swarm.cli.app import cli, main

__all__ = ["cli", "main"]
