"""Preflight: package a model and check it can serve, before a cloud provider uploads anything.

It sits above both packaging and serving (it packages with one and probes with the other);
neither imports it. `prepare.prepare_model` runs it in a child process for the cloud providers.
"""
