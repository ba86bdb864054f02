"""OpenAI-compatible gateway in front of vLLM serving ChatDOC/OCRFlux-3B."""

__version__ = "0.1.0"
