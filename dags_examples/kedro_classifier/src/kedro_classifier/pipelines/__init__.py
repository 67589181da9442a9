"""Modular pipelines of the example project: ``training`` fits the model, ``inference`` scores new instances."""
