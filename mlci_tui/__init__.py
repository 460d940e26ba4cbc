"""mlci: continuous integration and delivery for machine learning, in git hooks and the terminal."""

__version__ = "0.1.0"
