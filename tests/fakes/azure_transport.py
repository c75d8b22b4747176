"""The azure-core transport seam shared by the Azure fakes: a request in, a canned response out."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.pipeline.transport import AsyncHttpTransport
from azure.core.rest import HttpRequest
from azure.core.rest._http_response_impl_async import AsyncHttpResponseImpl
from azure.core.utils import case_insensitive_dict


class _ContentStream:
    """What a streamed download reads: the body, in one chunk."""

    def __init__(self, pipeline: Any, response: FakeResponse, **_: Any) -> None:
        self.response = response
        self._chunks = [response._content or b""]
        self.content_length = len(self._chunks[0])

    def __aiter__(self) -> _ContentStream:
        return self

    async def __anext__(self) -> bytes:
        if not self._chunks:
            raise StopAsyncIteration
        return self._chunks.pop()


class FakeResponse(AsyncHttpResponseImpl):
    def __init__(
        self, request: HttpRequest, status: int, body: bytes, headers: dict[str, str]
    ) -> None:
        headers = {"Content-Type": "application/json", **headers}
        super().__init__(
            request=request,
            internal_response=None,
            status_code=status,
            reason="OK" if status < 400 else "Error",
            headers=case_insensitive_dict(headers),
            content_type=headers.get("Content-Type"),
            stream_download_generator=_ContentStream,
        )
        self._content = body
        self._is_closed = True
        self._is_stream_consumed = True

    async def read(self) -> bytes:
        return self._content or b""


#: (status, body, headers): a body of bytes goes out as is, anything else as JSON.
Handler = Callable[[HttpRequest], tuple[int, Any, dict[str, str]]]


class FakeAsyncTransport(AsyncHttpTransport):  # type: ignore[type-arg]
    """An `AsyncHttpTransport` that answers with `handle(request)`: (status, body, headers)."""

    def __init__(self, handle: Handler) -> None:
        self._handle = handle
        self.requests: list[tuple[str, str]] = []

    async def send(self, request: Any, **kwargs: Any) -> FakeResponse:
        self.requests.append((request.method, request.url))
        status, body, headers = self._handle(request)
        if isinstance(body, bytes):
            raw = body
        else:
            raw = b"" if body is None else json.dumps(body).encode()
        return FakeResponse(request, status, raw, headers)

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> FakeAsyncTransport:
        return self

    async def __aexit__(self, *args: Any) -> None:
        return None


class TokenCredential:
    """A credential that hands out a bearer token, for the fakes that insist on one."""

    async def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        return AccessToken("token", 4_000_000_000)

    async def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        return AccessTokenInfo("token", 4_000_000_000)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> TokenCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None
