"""Journeys: event-triggered, multi-step conversations run by the customer's home shard."""
