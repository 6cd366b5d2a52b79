"""The control plane as a Kubernetes operator (``skyroute operator``).

On a cluster the API server replaces the policy folder: kopf watches
RoutingPolicy and ModelPool objects, and the same validation and compiler
that ``skyroute control`` runs on a folder turn them into snapshots, served
to routers by the same gRPC distribution service. What this package adds is
what only a cluster has: per-object acceptance (one bad object must not
block the others), status conditions and events on each object, a
validating admission webhook, a Lease so that replicas do not fight over
status, and a TLS certificate for the webhook.

Modules, one job each: ``world`` (objects in, accepted set and snapshot
out), ``fleet`` (which router holds which object version), ``conditions``
(status as the API conventions want it), ``admission`` (the webhook's
verdict), ``api`` (the few API calls kopf does not make for us), ``writer``
(status patches and events), ``lease`` (leader election), ``certs`` (webhook
TLS), ``handlers`` (kopf registration) and ``operator`` (the process).
"""
