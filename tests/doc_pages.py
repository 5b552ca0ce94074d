"""The pages a user reads (the README and the docs site's sources) and the fenced blocks in
them: shared by the tests that run or parse what the docs show."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: a fenced block: its language (group 1) and its text (group 2); every block is matched,
#: so that fences pair up
FENCE = re.compile(r"```(\w*)\n(.*?)```", re.S)
