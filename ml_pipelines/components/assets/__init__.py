"""One module per stage of the chain; each builds its assets (and checks) from a PipelineContext."""
