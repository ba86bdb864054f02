"""Engines: the implementations of the page contract ("read this page image")."""

from ocrflux.engines.base import PageEngine, PageJob, PageResult

__all__ = ["PageEngine", "PageJob", "PageResult"]
