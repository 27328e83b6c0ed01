"""Developer commands behind `./assistant`: training only when needed, and the NLU quality gate."""
