"""HTTP routes of the service. Route docstrings become the OpenAPI text users read."""
