"""agent-traces read side: queries, reports and the `traces` command line."""
