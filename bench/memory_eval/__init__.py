"""Memory quality on the real local model: a labelled set, the options compared, counts."""
