"""The carnb version (its own module so lower layers can read it without the package root)."""

__version__ = "0.1.0"
