"""Transports: the router's doors over sockets.

Each module here is a thin door (HTTP, gRPC) that accepts connections, hands
each request to the inbound pipeline and writes its answer back. A door holds
no routing logic; it may import the ingress layer and below, never the reverse.
"""
