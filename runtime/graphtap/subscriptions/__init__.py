"""The subscription control plane: desired state, reconcile, lifecycle, certificates."""
