"""Composition root of convomem: settings, graph wiring, the Python API, the CLI and server factories."""
