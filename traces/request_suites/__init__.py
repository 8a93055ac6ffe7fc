"""Verifier-style request suites: one chat-completions request per line, sent as is to each
provider and recorded as one-step runs (`traces replay`)."""
