"""Search: Ray Tune searchers and trials, the driver from a config to a mixture, validation, resume.

``run_search(SearchConfig(...))`` is the library entry point (``mixopt search`` calls it);
``resume_search(name)`` continues a stopped search. Ray is imported by the modules that need it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SearchConfig", "SearchResult", "resume_search", "run_search"]


def __getattr__(name: str) -> Any:
    # The driver pulls in Ray Tune; importing mixopt.search for the config alone stays light.
    if name == "SearchConfig":
        from mixopt.search.config import SearchConfig

        return SearchConfig
    if name in ("run_search", "resume_search", "SearchResult"):
        from mixopt.search import driver

        return getattr(driver, name)
    raise AttributeError(name)
