"""One module per subcommand: `register(subparsers, common)` adds its parser
and `run(args) -> int` does the work. Modules here import only the standard
library at top level; the heavy parts are imported inside `run`, so building
the parser stays fast on the headless path."""
