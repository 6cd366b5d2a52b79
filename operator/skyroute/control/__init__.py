"""The skyroute control plane: policy YAML in, versioned snapshots out.

It plays the role an xDS management server plays for Envoy. Operators write
RoutingPolicy and ModelPool objects (as Kubernetes custom resources or as plain
YAML files in a folder); the control plane validates them with the same rules
the CRDs declare, compiles them into one immutable ``skyroute.v1.Snapshot`` and
streams it to every connected router, tracking which version each router has
accepted. Routers never import this package, and this package never imports
theirs: the only thing they share is the ``skyroute.v1`` contract.
"""
