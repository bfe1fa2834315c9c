"""tunewise: decide whether and how to fine-tune a language model, then run the job.

The command line, the top of the stack: `tunewise` imports `launcher` and `advisor`, neither imports it.
`cli` builds the parser; `commands/` holds one module per verb.
"""

from advisor import __version__

__all__ = ["__version__"]
