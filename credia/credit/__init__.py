"""Credit rules shared by every process: the lender's policy (``policies/credit.yml``), loan maths and the
pre-evaluation of an application. Pure code with no service behind it, so the core-banking mock and the
assistant agree on every figure.
"""
