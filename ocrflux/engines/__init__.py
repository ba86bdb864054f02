"""Engines: the implementations of the page contract ("read this page image").

`base` holds the contract, `vllm` and `local` the two engines, `failover` the wrapper that
reads with the local engine while vLLM is down, `factory` picks them from the settings.
Deliberately empty: the local engine's spawned worker processes import
`ocrflux.engines.local`, and must not pull the web framework in with this package.
"""
