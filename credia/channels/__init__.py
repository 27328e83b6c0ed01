"""Rasa input channels of the assistant (registered in ``credentials.yml``)."""
