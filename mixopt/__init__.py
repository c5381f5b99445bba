"""mixopt: data-mixture optimization."""

__version__ = "0.1.0"
