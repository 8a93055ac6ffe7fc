"""`traces report --html FILE`: one self-contained HTML page with the comparison, charts and
per-run timelines.

`build.build_report` gathers what the page shows, `page.render_page` writes it (every piece
through `markup`, which escapes all text), `save.write_atomically` puts it on disk.
"""
