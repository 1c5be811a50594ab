"""Deployment providers: one subpackage each, found through `cloudml.providers.registry`."""

from cloudml.providers.base import Deployer
from cloudml.providers.registry import get_deployer, provider_names

__all__ = ["Deployer", "get_deployer", "provider_names"]
