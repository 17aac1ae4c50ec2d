"""The ``igrt`` command line."""
