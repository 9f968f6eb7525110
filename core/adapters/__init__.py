"""Adapters to what core calls over HTTP: Vertica, MIDAS and the model service."""
