"""Fault injection for the agent: a scriptable device-procedure server on loopback."""
