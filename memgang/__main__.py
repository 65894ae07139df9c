"""``python -m memgang``: the memgang command."""

from .cli import main

main()
