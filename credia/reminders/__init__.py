"""Proactive payment reminders: a scheduler that writes first to customers about what they owe, only on
channels they consented to and within each country's contact rules, keeping an audit of every decision.

``python -m credia.reminders`` runs it (``./assistant start`` does); ``policies/reminders.yml`` holds the
cadence and the contact rules.
"""
