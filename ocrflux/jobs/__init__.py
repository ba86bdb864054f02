"""Batch jobs: OpenAI's Batch API and Mistral's batch jobs, durable in a database.

`store/` (SQL), `storage` (file bytes), `validate` (input files), `executor` (one line, through
the same services as the synchronous endpoints), `worker` (the loop every gateway runs:
claim, run, commit, finalize), `finalize` (output files), `service` (what the routes call),
`wire` (OpenAI's and Mistral's object shapes).
"""
