"""One module per `glonet` command: `add_parser(subparsers)` and `run(args)`."""
