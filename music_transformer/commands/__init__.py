"""One module a `music-transformer` command, each with its `main(argv)`; `cli.py` dispatches to them."""
