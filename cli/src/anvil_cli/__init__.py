"""anvil: the command-line client of an Anvil LLM inference portal (``anvil --help``)."""

__version__ = "0.1.0"
