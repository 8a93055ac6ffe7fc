"""The DuckDB trace store: schema, migrations, documentation and the durable recorder."""
