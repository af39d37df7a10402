"""The Kubernetes target: the user's stable Deployment, a candidate derived from it, the routers'
objects, all through one API layer (the only package that imports the ``kubernetes`` client).

Modules: ``settings`` (names and settings from the spec), ``marks`` (the release id and the
originals kept on the objects the target changes), ``merge`` (JSON merge patches),
``derive`` (the candidate Deployment and stable's changes, pure), ``pods`` (readiness and P0
signals read from pods, pure), ``api`` (requests, retries, errors), ``connect`` (the client
from a kubeconfig or in-cluster), ``services`` (the stable Service's pin and the candidate's
Services, for routers) and ``workloads`` (the Workloads protocol).

Nothing here is imported until a Kubernetes release runs: the CLI and the local target never
load the client.
"""
