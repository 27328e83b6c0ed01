"""Spanish NLU components for the Rasa pipeline (imported by Rasa from ``config.yml`` by module path)."""
