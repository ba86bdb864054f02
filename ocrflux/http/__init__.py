"""The HTTP edge: uvicorn's server and its limits, the outermost ASGI layer, bodies and streams.

Below the routes, above nothing of the request path: these modules know HTTP, not pages.
"""
