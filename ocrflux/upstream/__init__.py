"""The upstream layer: the pooled client to the vLLM replicas (it knows no pages or documents)."""

from ocrflux.upstream.client import Replica, Upstream, upstream_error, upstream_timeout
from ocrflux.upstream.transport import LeanTransport

__all__ = ["LeanTransport", "Replica", "Upstream", "upstream_error", "upstream_timeout"]
