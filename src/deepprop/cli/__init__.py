"""Command-line interface: ``deepprop <command> ...``. Each submodule registers its commands."""
