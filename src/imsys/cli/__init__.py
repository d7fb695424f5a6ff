"""The ``imsys`` command line (Typer + Rich).

The root application lives in :mod:`imsys.cli.main`; this package stays import-free so that
role CLIs (``imsys.emt.cli``, ``imsys.meters.cli`` …) can use :mod:`imsys.cli._common`
without importing each other.
"""
