"""The subcommands of ``relay``, one module per area; see relay.cli."""
