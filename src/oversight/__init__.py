"""oversight: a laboratory for scalable oversight."""

__version__ = "0.1.0"
