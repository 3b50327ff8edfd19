"""Service glue shared by the API and the workers: Redis job statuses, worker health, metrics.

Domain logic stays in :mod:`forecasting`; this package only stores and reports what jobs do.
"""
