"""Processing: the pipeline of stages, its sources and sinks, dead letters and the runner."""
