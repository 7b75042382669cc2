"""Command-line interface ``ase-mlgen``.

Every module in this package that defines ``register(subparsers)`` adds one sub-command; the
sub-command's parser must set ``func`` (a callable taking the parsed ``argparse.Namespace`` and
returning an exit code or None).
"""
