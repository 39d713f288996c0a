"""Latent-space and application tools built on a trained run (``ganforge.tools.latent``)."""
