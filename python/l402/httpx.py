"""An httpx transport that pays for L402 APIs: mount it and an httpx program gains L402.

    import httpx, l402, l402.httpx
    client = l402.Client(wallet=..., max_cost_sat=100)
    http = httpx.Client(transport=l402.httpx.L402Transport(client))
    r = http.get("https://api.example/quote")          # a 402 is paid within the caps, then retried
    r.extensions["l402_payment"]                       # the l402.Payment made, or None

The request goes through :class:`l402.Client` (the Rust client), which follows redirects itself, so httpx
sees the final response. Refusals are raised as the exceptions of :mod:`l402.errors`. The response body is
read whole (at most the client's ``max_body``) before httpx gets it.
"""

from __future__ import annotations

from typing import List, Tuple

import httpx

from ._client import AsyncClient, Client, Response

__all__ = ["L402Transport", "AsyncL402Transport"]

# Set by the HTTP stack on the Rust side; httpx's values would be wrong or duplicated.
_SKIP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer"}


def _request_headers(request: httpx.Request) -> List[Tuple[str, str]]:
    return [
        (k.decode("latin-1"), v.decode("latin-1"))
        for k, v in request.headers.raw
        if k.decode("latin-1").lower() not in _SKIP
    ]


def _response(r: Response, request: httpx.Request) -> httpx.Response:
    headers = [(k.encode("latin-1"), v) for k, v in r.headers.raw if k.lower() != "transfer-encoding"]
    return httpx.Response(
        r.status,
        headers=headers,
        stream=httpx.ByteStream(r.content),
        request=request,
        extensions={"l402_payment": r.payment, "l402_token_id": r.token_id},
    )


class L402Transport(httpx.BaseTransport):
    """A synchronous httpx transport over an :class:`l402.Client`."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        r = self.client.request(
            request.method, str(request.url), headers=_request_headers(request), data=body or None
        )
        return _response(r, request)


class AsyncL402Transport(httpx.AsyncBaseTransport):
    """An asyncio httpx transport over an :class:`l402.AsyncClient`."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        r = await self.client.request(
            request.method, str(request.url), headers=_request_headers(request), data=body or None
        )
        return _response(r, request)
