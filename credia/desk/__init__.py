"""The agent desk: where people take over conversations the assistant hands off, and hand them back.

Its own process (``python -m credia.desk``) and store: a service API for the assistant (``/api/``, bearer token),
and a console for agents and supervisors (login, queue, conversation with its context, replies through Rasa's
HTTP API, notes, transfers, resolution, tickets and callbacks), with live updates by server-sent events.
"""
