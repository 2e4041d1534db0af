"""The artifact store: locations (local folders or S3), artifacts with manifests, the stage runner."""

from dorl.store.artifact import MANIFEST, Artifact, ArtifactWriter, digest, sha256_file
from dorl.store.location import Entry, Location
from dorl.store.runner import StageContext, StageResult, run_stage

__all__ = [
    "MANIFEST",
    "Artifact",
    "ArtifactWriter",
    "Entry",
    "Location",
    "StageContext",
    "StageResult",
    "digest",
    "run_stage",
    "sha256_file",
]
