"""Mock core-banking service: customers, consents, credit products, applications, loans, payments,
payment plans, promises to pay and a credit-bureau stand-in, behind an HTTP API a lender's adapter can replace.

Run it with ``python -m credia.core_banking``; it creates its tables and seeds demo data on first start.
"""
