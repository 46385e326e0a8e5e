"""Helpers shared by the tests: the running stack, polling, signed requests."""
