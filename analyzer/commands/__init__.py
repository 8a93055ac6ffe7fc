"""One module per `traces` command; each exposes `register(app)`."""
