"""``python -m relay`` runs the relay command."""

from relay.cli import main

main()
