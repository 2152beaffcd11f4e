"""Deployment to AWS: `python -m deploy.deploy` and `python -m deploy.teardown` (see README)."""
