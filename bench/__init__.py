"""Benchmarks: convomem side by side with the bare LangGraph recipe and its DeltaChannel variant."""

__all__: list[str] = []
