"""Local provider: a serving process per deployment on this machine; no account, no Docker."""

from cloudml.providers.local.deployer import LocalDeployer, LocalOptions

__all__ = ["LocalDeployer", "LocalOptions"]
