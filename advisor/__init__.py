"""tunewise advisor: answers -> facts -> rules -> decision -> plan -> report.

Importing this package must stay cheap: no torch, transformers, peft, trl, datasets,
bitsandbytes or accelerate at import time (tests/test_imports.py checks it).
"""

__version__ = "0.1.0"
