"""Plan to Argo Workflow compilation and the Argo client."""
