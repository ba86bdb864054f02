"""Tests of the pure format layer (ocrflux/format/)."""
