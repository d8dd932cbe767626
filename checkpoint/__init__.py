"""Everything convomem does in Postgres: server, pool, saver, store, setup and thread maintenance."""
