"""Browse trained model versions: metrics, data window, data quality, which one is active."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, status

from api import dependencies
from api.schemas import MeterId, MeterType
from forecasting.registry import ModelRegistry, ModelVersion

router = APIRouter(prefix="/models", tags=["models"])


def _summary(version: ModelVersion, *, with_data_quality: bool = True) -> dict[str, Any]:
    metadata = version.metadata
    summary = {
        "version": version.version,
        "active": version.is_active,
        "model_kind": metadata.get("model_kind"),
        "trained_at": metadata.get("trained_at"),
        "features": metadata.get("features"),
        "uses_temperature": bool((metadata.get("layout") or {}).get("use_temperature")),
        "metrics": metadata.get("metrics"),
        "data_window": metadata.get("data_window"),
        "promoted": metadata.get("promoted"),
        "promotion_reason": metadata.get("promotion_reason"),
    }
    if with_data_quality:
        summary["data_quality"] = metadata.get("data_quality")
    return summary


def _active_name(versions: list[ModelVersion]) -> str | None:
    return next((version.version for version in versions if version.is_active), None)


@router.get("/")
def list_models(registry: Annotated[ModelRegistry, Depends(dependencies.model_registry)]) -> dict[str, Any]:
    """Every meter with a trained model: its versions, newest first, with metrics and data window.

    The data-quality reports (a few KB per version) are left to ``/models/{meter_type}/{meter_id}``,
    so that a fleet's listing stays small.
    """
    meters = []
    for meter_type, meter_id in registry.list_meters():
        versions = registry.list_versions(meter_type, meter_id)
        meters.append(
            {
                "meter_type": meter_type,
                "meter_id": meter_id,
                "active_version": _active_name(versions),
                "versions": [_summary(version, with_data_quality=False) for version in versions],
            }
        )
    return {"models": meters}


@router.get("/{meter_type}/{meter_id}")
def meter_models(
    meter_type: MeterType,
    meter_id: MeterId,
    registry: Annotated[ModelRegistry, Depends(dependencies.model_registry)],
) -> dict[str, Any]:
    """All versions of one meter's model, newest first."""
    versions = registry.list_versions(meter_type, meter_id)
    if not versions:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"No trained model for meter '{meter_id}' of type '{meter_type}'."
        )
    return {
        "meter_type": meter_type,
        "meter_id": meter_id,
        "active_version": _active_name(versions),
        "versions": [_summary(version) for version in versions],
    }
