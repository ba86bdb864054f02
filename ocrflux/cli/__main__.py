"""`python -m ocrflux.cli`: the `ocrflux` command without the console script."""

from ocrflux.cli.main import main

main()
