"""Files written safely: atomic replace and content fingerprints (used by every package)."""
