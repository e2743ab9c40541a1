"""bricklm: turn your own writing into a small GPT, train it fast, and see what every block does."""

__version__ = "0.1.0"
