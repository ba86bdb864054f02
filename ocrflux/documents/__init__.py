"""Whole documents: sources, page rendering and OCRFlux's cross-page merge."""
