"""The upstream layer: admission, balancing and health for the vLLM replicas (it knows no pages,
documents or OCRFlux)."""

from ocrflux.upstream.admission import Admission
from ocrflux.upstream.client import Upstream
from ocrflux.upstream.errors import upstream_error, upstream_timeout
from ocrflux.upstream.replicas import Replica, ReplicaSet, State
from ocrflux.upstream.transport import LeanTransport

__all__ = [
    "Admission",
    "LeanTransport",
    "Replica",
    "ReplicaSet",
    "State",
    "Upstream",
    "upstream_error",
    "upstream_timeout",
]
