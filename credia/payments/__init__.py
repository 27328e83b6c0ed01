"""Mock payments provider: payment links, a demo checkout page, and signed webhooks to core banking.

Run it with ``python -m credia.payments``; build it in-process with ``credia.payments.app.create_app``.
"""
