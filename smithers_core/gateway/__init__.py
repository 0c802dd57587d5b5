"""The Smithers gateway: RPC over HTTP and WebSocket, scopes, limits and extensions."""

from smithers_core.gateway.context import GatewayContext
from smithers_core.gateway.extensions import ExtensionContext, StreamContext
from smithers_core.gateway.gateway import Gateway
from smithers_core.gateway.options import GatewayOptions

__all__ = ["ExtensionContext", "Gateway", "GatewayContext", "GatewayOptions", "StreamContext"]
