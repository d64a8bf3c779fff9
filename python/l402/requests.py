"""A requests transport adapter that pays for L402 APIs: mount it and a requests program gains L402.

    import requests, l402, l402.requests
    session = requests.Session()
    session.mount("https://", l402.requests.L402Adapter(l402.Client(wallet=..., max_cost_sat=100)))
    r = session.get("https://api.example/quote")       # a 402 is paid within the caps, then retried
    r.l402_payment                                     # the l402.Payment made, or None

The request goes through :class:`l402.Client` (the Rust client), which follows redirects itself: the
response requests gets is the final one. Responses come uncompressed (the adapter asks for
``Accept-Encoding: identity``) and whole (at most the client's ``max_body``). Refusals are raised as the
exceptions of :mod:`l402.errors`. Cookies the server sets are not put in the session's jar.
"""

from __future__ import annotations

import io
from http import HTTPStatus
from typing import Any, List, Mapping, Optional, Tuple, Union

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers

from ._client import Client

__all__ = ["L402Adapter"]

_SKIP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "accept-encoding"}


class L402Adapter(BaseAdapter):
    """A requests adapter over an :class:`l402.Client`; mount it with ``session.mount(prefix, adapter)``.

    The response carries ``l402_payment`` (an :class:`l402.Payment`, or None) and ``l402_token_id``.
    """

    def __init__(self, client: Client) -> None:
        super().__init__()
        self.client = client

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Union[None, float, Tuple[float, float]] = None,
        verify: Union[bool, str] = True,
        cert: Any = None,
        proxies: Optional[Mapping[str, str]] = None,
    ) -> requests.Response:
        headers: List[Tuple[str, str]] = [
            (k, v) for k, v in request.headers.items() if k.lower() not in _SKIP
        ]
        headers.append(("accept-encoding", "identity"))
        body = request.body
        if body is not None and not isinstance(body, (bytes, str)):
            body = b"".join(body)  # a generator or file: read once; the Rust client replays it after paying
        r = self.client.request(request.method or "GET", request.url or "", headers=headers, data=body)
        resp = requests.Response()
        resp.status_code = r.status
        try:
            resp.reason = HTTPStatus(r.status).phrase
        except ValueError:
            resp.reason = ""
        resp.headers = CaseInsensitiveDict({k: ", ".join(r.headers.get_list(k)) for k in r.headers})
        resp.encoding = get_encoding_from_headers(resp.headers)
        resp._content = r.content
        resp.raw = io.BytesIO(r.content)
        resp.url = r.url
        resp.request = request
        resp.connection = self
        resp.l402_payment = r.payment  # type: ignore[attr-defined]
        resp.l402_token_id = r.token_id  # type: ignore[attr-defined]
        return resp

    def close(self) -> None:
        """Nothing to close: the client's connections live as long as the client."""
