"""The `ocrflux` command: `serve` runs the gateway, `convert` sends documents to a running one.

`convert` is a client of the gateway's HTTP API (`POST /v1/ocr`, streaming) and imports
nothing of the serving code; `serve` is `python -m ocrflux.api_server` with options.
"""
