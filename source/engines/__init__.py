"""Engines: the loops behind the entry scripts."""
