"""Demo data generators, named from specs by dotted path."""
