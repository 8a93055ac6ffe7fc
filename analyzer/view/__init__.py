"""`traces view`: a read-only web app over a trace store, served on loopback.

Server-rendered pages (Jinja, every recorded value escaped) under a strict content security
policy: the only script and style are the package's own static files. Every page opens the
store for its request and closes it again (`traces.store.database.open_for_reading`), so the
viewer never holds the file: a recording that starts meanwhile gets it, and the pages then
read through the store's server, as every other read command does.
"""
