"""An offline Google Cloud for the `gcp` provider: a Vertex AI REST emulator that serves real
predictions, Cloud Logging entries of the serving processes, and gcp-storage-emulator for GCS.
`cloudml emulator gcp` runs it; `GcpEmulator` starts it from Python or pytest."""

from cloudml.emulators.gcp.process import GcpEmulator
from cloudml.emulators.gcp.server import LOCATION, PROJECT, client_env

__all__ = ["GcpEmulator", "LOCATION", "PROJECT", "client_env"]
