"""An offline Azure ML workspace: ARM + Azure ML REST operations, managed online endpoints
serving real predictions, and Azurite for blob storage."""

from cloudml.emulators.azure.process import AzureEmulator

__all__ = ["AzureEmulator"]
