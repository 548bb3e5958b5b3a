"""DGX Music: a self-hosted AI music studio for one GPU box."""

__version__ = "0.1.0"
