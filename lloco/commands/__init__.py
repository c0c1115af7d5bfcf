"""One module per `lloco` subcommand; each defines `register(subparsers)`."""
