"""``python -m imsys`` is the ``imsys`` command."""

from imsys.cli.main import main

main()
