"""Tests of the intake layer (ocrflux/intake/)."""
