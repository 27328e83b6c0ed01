"""Collections rules shared by every process: the lender's policy (``policies/collections.yml``: identity
verification limits and the negotiation matrix by days-past-due bucket) and the payment-plan maths. Pure code
with no service behind it, so core banking and the assistant agree on every offer.
"""
