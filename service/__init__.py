"""The seat service: servicers -> domain -> store."""

# The one place of the version: pyproject.toml reads it (dynamic version), `seats-server --version`
# prints it. The client distribution (clients/python, `seats.__version__`) is released with it, at
# the same version.
__version__ = "0.2.0"
