"""The router's inbound side: what every door (HTTP, gRPC) does before the engine."""
