"""Starting a ``selip`` process quickly: its heavy imports run with the cyclic garbage
collector paused.

Importing torch, Lightning and transformers allocates millions of objects, and the
collector, started every 700 new container objects, walks the growing heap again and
again: about a sixth of the import time of a ``selip fit`` process, and of every rank a
launcher starts. Modules live as long as the process, so there is nothing for it to find.
Afterwards what the imports built is frozen (``gc.freeze``): later full collections during
training skip it, and forked loader workers share those pages instead of copying them as
the collector touches them.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def imports_without_gc() -> Iterator[None]:
    """Pause the cyclic collector for a block of imports; freeze what they built.

    Nothing is frozen when the block imported no new module (a second command run in the
    same Python process, as in a notebook or a test), so garbage that process holds at
    that moment is still collected."""
    enabled = gc.isenabled()
    modules = len(sys.modules)
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            if len(sys.modules) > modules:
                gc.freeze()
            gc.enable()
