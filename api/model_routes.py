"""Browse trained model versions: metrics, data window, data quality, which one is active."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, status

from api import dependencies
from api.schemas import MeterId, MeterType
from forecasting.registry import ModelRegistry, ModelVersion

router = APIRouter(prefix="/models", tags=["models"])


def _summary(version: ModelVersion) -> dict[str, Any]:
    metadata = version.metadata
    return {
        "version": version.version,
        "active": version.is_active,
        "model_kind": metadata.get("model_kind"),
        "trained_at": metadata.get("trained_at"),
        "metrics": metadata.get("metrics"),
        "data_window": metadata.get("data_window"),
        "data_quality": metadata.get("data_quality"),
        "promoted": metadata.get("promoted"),
        "promotion_reason": metadata.get("promotion_reason"),
    }


@router.get("/")
def list_models(registry: Annotated[ModelRegistry, Depends(dependencies.model_registry)]) -> dict[str, Any]:
    """Every meter with a trained model, and its active version."""
    meters = []
    for meter_type, meter_id in registry.list_meters():
        active = registry.active_version(meter_type, meter_id)
        meters.append(
            {
                "meter_type": meter_type,
                "meter_id": meter_id,
                "active_version": active.version if active else None,
                "versions": len(registry.list_versions(meter_type, meter_id)),
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
    return {"meter_type": meter_type, "meter_id": meter_id, "versions": [_summary(v) for v in versions]}
