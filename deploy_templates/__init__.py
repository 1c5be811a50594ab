"""Templates cloudml renders (see README.md); importable as cloudml.deploy_templates."""
