"""Crash-consistency ("chaos") testing of the real sufd daemon.

:mod:`tests.chaos.harness` runs a crash campaign (writers appending to source files while the
daemon is SIGKILLed and restarted over and over) and :mod:`tests.chaos.ledger_compare` compares
the ledger it ends with against a one-shot ``sufd ingest`` of the final files.
"""
