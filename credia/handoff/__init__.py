"""Handing a conversation to a person: the triggers, the desk interface and message forwarding."""
