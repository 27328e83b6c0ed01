"""Metrics of the assistant computed from the conversations themselves, and tools for conversation designers.

Everything is read back from Rasa's SQL tracker store (``sessions``), reduced to plain data (``metrics``,
``nlu_review``) that the command line (``python -m credia.analytics``) prints and a dashboard can show. The
traffic simulator (``python -m credia.analytics.simulate``) plays conversations through the real bot and says
which figures the metrics must then give.
"""
