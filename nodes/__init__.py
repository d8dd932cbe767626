"""Graph nodes of convomem: one module per node, each built by a factory with injected dependencies."""
