"""`traces view`: a read-only web app over a trace store, served on loopback.

Server-rendered pages (Jinja, every recorded value escaped) under a strict content security
policy: the only script and style are the package's own static files. Pages read the store
through `reading.StoreReader`, which keeps the file open read-only between requests only
while no writer wants it; while one writes the store, pages read through the store's
server, as every other read command does.
"""
