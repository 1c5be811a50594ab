"""Offline stand-ins for the clouds, reached by the unmodified providers through the official
SDKs. They behave like the services (status transitions, name conflicts, errors) and serve real
predictions with the cloudml serving runtime, so deployment scripts can be tested without an
account."""
