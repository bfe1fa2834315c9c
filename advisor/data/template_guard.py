"""Rendering a model's chat template with limits: a template is code that came with the model folder.

A Jinja template with nested loops over `range(10**6)`, or a string that doubles on every pass, makes
`inspect` and `recommend` hang for hours or eat all memory. Before any row is rendered, the template
renders one short conversation in a forked child process that has a memory cap and a deadline; a
template that misses either is refused with a message. Each real row then renders under a time limit
and an output-size limit (a row that breaks them is reported as that row's template error).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import contextmanager

from advisor.errors import UserError

PROBE_SECONDS = 10.0  # a normal template renders a short conversation in well under 10 ms
ROW_SECONDS = 5.0
MAX_OUTPUT = 4 << 20  # characters: a rendered row longer than 4 MiB is no training example
_PROBE_MEMORY = 1 << 30  # extra address space the probe may use
_PROBE = [
    {"role": "system", "content": "You are helpful."},
    {"role": "user", "content": "Hello, how are you?"},
    {"role": "assistant", "content": "Fine, thanks. How can I help?"},
]


class TemplateLimit(Exception):
    """A template broke the time or output limit on one row."""


def probe(tok, name: str = "the tokenizer") -> None:
    """Refuse (UserError) a chat template that cannot render a short conversation within the limits.
    A template that merely raises on the probe is left to the per-row checks."""
    if not getattr(tok, "chat_template", None) or not hasattr(os, "fork"):
        return
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            import resource

            with open("/proc/self/statm") as f:
                vm = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            resource.setrlimit(resource.RLIMIT_AS, (vm + _PROBE_MEMORY, vm + _PROBE_MEMORY))
            out = tok.apply_chat_template(_PROBE, tokenize=False)
            code = 3 if len(out) > MAX_OUTPUT else 0
        except MemoryError:
            code = 4
        except BaseException:  # noqa: BLE001 - a template error is the per-row checks' business
            code = 0
        os._exit(code)
    deadline = time.monotonic() + PROBE_SECONDS
    status = None
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.01)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise UserError(
            f"the chat template of {name} did not finish rendering a 3-message conversation in "
            f"{PROBE_SECONDS:g} s (it loops without end, or nearly)",
            "fix the template (tokenizer_config.json `chat_template` or chat_template.jinja), or "
            "use a model or --tokenizer with a standard one",
        )
    code = os.waitstatus_to_exitcode(status)
    if code in (3, 4) or code < 0:
        what = (
            f"writes more than {MAX_OUTPUT >> 20} MiB"
            if code == 3
            else f"needs more than {_PROBE_MEMORY >> 30} GiB of memory"
        )
        raise UserError(
            f"the chat template of {name} {what} for a 3-message conversation (its output grows "
            "without bound)",
            "fix the template (tokenizer_config.json `chat_template` or "
            "chat_template.jinja), or use a model or --tokenizer with a standard one",
        )


@contextmanager
def time_limit(seconds: float):
    """Raise TemplateLimit in the block after `seconds` (main thread only; elsewhere no limit)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum, frame):
        raise TemplateLimit(f"rendering took more than {seconds:g} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def render(tok, messages, *, add_generation_prompt: bool = False) -> str:
    """apply_chat_template(tokenize=False) under the per-row time and output limits."""
    with time_limit(ROW_SECONDS):
        out = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    if isinstance(out, str) and len(out) > MAX_OUTPUT:
        raise TemplateLimit(f"the rendered row is longer than {MAX_OUTPUT >> 20} MiB")
    return out
