"""banditrec: simulate and compare contextual-bandit recommenders."""

from banditrec import environments  # registers the built-in Gymnasium ids

__version__ = "0.1.0"
__all__ = ["__version__", "environments"]
