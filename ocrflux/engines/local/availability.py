"""Start-up check: is the optional `cpu` extra installed?"""

from __future__ import annotations

import importlib.util

# Module name -> distribution, for the message.
_REQUIRED = {
    "rapidocr": "rapidocr",
    "onnxruntime": "onnxruntime",
    "cv2": "opencv-python-headless",
    "numpy": "numpy",
}


def check_available() -> str | None:
    """None if the local engine can run, else one line saying what to install."""
    missing = [
        dist for module, dist in _REQUIRED.items() if importlib.util.find_spec(module) is None
    ]
    if not missing:
        return None
    return f"the local OCR engine needs {', '.join(missing)}: install with pip install -e '.[cpu]'"
