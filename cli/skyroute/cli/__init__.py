"""The ``skyroute`` console script: one entry point for every process role."""
