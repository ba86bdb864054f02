"""Pure text logic: page JSON, HTML and pipe tables, the cross-page merge, output shaping.

Nothing here does I/O or knows a model server; every function is testable on strings alone.
"""
