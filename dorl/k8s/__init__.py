"""Run dorl's stages on Kubernetes: render Jobs / an Argo Workflow for a run config, submit them, watch them."""
