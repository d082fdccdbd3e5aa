"""A gateway server that listens on the addresses of ``GATEWAY_LISTEN`` only (``GATEWAY_SERVER=twisted-bound``).

LocalStack 4.9.2's default Twisted server takes only the port from each ``GATEWAY_LISTEN`` entry and listens on every
IPv4 interface, so ``GATEWAY_LISTEN=127.0.0.1:4566`` still exposes LocalStack (and its unauthenticated APIs) on
``0.0.0.0:4566``. This server is the same Twisted server with each endpoint bound to its own interface, so the
native stack really stays on the loopback address. In docker compose ``GATEWAY_LISTEN=0.0.0.0:4566`` keeps the
container reachable.
"""

from __future__ import annotations

from typing import Any

from localstack import config
from localstack.aws.serving.twisted import TLSMultiplexerFactory
from localstack.runtime.server.core import RuntimeServer, RuntimeServerPlugin
from localstack.runtime.server.twisted import TwistedRuntimeServer
from rolo.gateway import Gateway
from rolo.serving.twisted import TwistedGateway
from twisted.internet import endpoints, reactor, ssl


class BoundTwistedRuntimeServer(TwistedRuntimeServer):  # type: ignore[misc]
    """LocalStack's Twisted runtime server, with every listening socket bound to the host it was given."""

    def register(
        self,
        gateway: Gateway,
        listen: list[config.HostAndPort],
        ssl_creds: tuple[str, str] | None = None,
    ) -> None:
        factory: Any = TwistedGateway(gateway)
        if ssl_creds:
            # Same as LocalStack: one port serves plain HTTP and HTTPS with LocalStack's certificate.
            cert_file_name, key_file_name = ssl_creds
            context_factory = ssl.DefaultOpenSSLContextFactory(key_file_name, cert_file_name)
            context_factory.getContext().use_certificate_chain_file(cert_file_name)
            factory = TLSMultiplexerFactory(context_factory, False, factory)
        for address in listen:
            endpoint_type = (
                endpoints.TCP6ServerEndpoint if config.is_ipv6_address(address.host) else endpoints.TCP4ServerEndpoint
            )
            endpoint_type(reactor, address.port, interface=address.host).listen(factory)


class BoundTwistedRuntimeServerPlugin(RuntimeServerPlugin):  # type: ignore[misc]
    name = "twisted-bound"

    def load(self, *args: Any, **kwargs: Any) -> RuntimeServer:
        return BoundTwistedRuntimeServer()
