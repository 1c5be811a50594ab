"""The serving runtime: one ASGI app that speaks the SageMaker, Vertex AI, Azure ML and
TF Serving REST contracts for a packaged SavedModel."""
