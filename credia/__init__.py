"""Credia: a self-service assistant for lenders in Latin America, built on Rasa Open Source."""
