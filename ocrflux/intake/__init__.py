"""What comes in: image strings decoded, downloads guarded, pages sized, visual tokens counted.

Knows no model server; CPU-bound work is run off the event loop by `preparation.ImagePreparer`.
"""
