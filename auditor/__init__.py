"""auditor: the persistent audit and history store for GWS Open Media notifications."""

__version__ = "0.1.0"
