"""The kit's gate in front of a served model's app: API key, well-formed requests, context.

transformers' server checks no key and answers some malformed requests with a 500;
:class:`Gate` wraps its ASGI app so that the server keeps the defaults of
:mod:`ftkit.deploy.server`: 401 without the key, 400 for a malformed body or a prompt longer
than the model's context, each with the OpenAI error body.
"""
from __future__ import annotations

import json
import secrets

from ftkit.core.config import ConfigError

OPEN_PATHS = ("/health",)


class Gate:
    """ASGI middleware in front of the server's app.

    - HTTP requests need ``Authorization: Bearer <key>``, except the open paths: 401.
    - A POST to the completion endpoints must be a JSON object with well-formed
      ``messages`` (chat) or ``prompt`` (completions) and a positive ``max_tokens``: 400
      (the app itself answers some of these with a 500).
    - With ``count_tokens`` and ``context``: a prompt whose tokens plus ``max_tokens`` exceed
      the model's context is refused with 400 (``context_length_exceeded``), before any
      compute.
    Errors have the OpenAI error body, so the ``openai`` client raises its usual exceptions.
    """

    def __init__(self, app, key: str, count_tokens=None, context: int = 0,
                 open_paths: tuple[str, ...] = OPEN_PATHS):
        if not key:
            raise ConfigError("the API key is empty: give a key (or let the kit draw one)")
        self.app, self.expected, self.open_paths = app, f"Bearer {key}".encode(), open_paths
        self.count_tokens, self.context = count_tokens, context

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            return await self.app(scope, receive, send)
        given = dict(scope.get("headers") or []).get(b"authorization", b"")
        if not secrets.compare_digest(given, self.expected):
            return await _error(send, 401, "missing or wrong API key", "invalid_api_key")
        if scope["method"] != "POST" or scope["path"] not in CHECKED:
            return await self.app(scope, receive, send)
        body = await _read_body(receive)
        problem = self.check(scope["path"], body)
        if problem:
            return await _error(send, 400, problem[1], problem[0])
        return await self.app(scope, _replay(body, receive), send)

    def check(self, path: str, body: bytes) -> tuple[str, str] | None:
        """``(code, message)`` of what is wrong with a request body, or None."""
        try:
            request = json.loads(body)
        except ValueError:
            return "invalid_json", "the request body is not valid JSON"
        if not isinstance(request, dict):
            return "invalid_request", "the request body must be a JSON object"
        field, texts = CHECKED[path], []
        value = request.get(field)
        if field == "messages":
            if not isinstance(value, list) or not value or not all(
                    isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(
                        m.get("content"), (str, list)) for m in value):
                return "invalid_messages", ("'messages' must be a non-empty list of "
                                            "{'role': str, 'content': str} objects")
            texts = [m["content"] for m in value if isinstance(m["content"], str)]
        elif not isinstance(value, str):
            return "invalid_prompt", "'prompt' must be a string"
        else:
            texts = [value]
        limit = request.get("max_tokens", request.get("max_completion_tokens", 16))
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            return "invalid_max_tokens", "'max_tokens' must be a positive integer"
        if self.count_tokens and self.context:
            used = sum(self.count_tokens(t) for t in texts) + limit
            if used > self.context:
                return "context_length_exceeded", (
                    f"the prompt and max_tokens need {used} tokens; the model's context is "
                    f"{self.context}")
        return None


CHECKED = {"/v1/chat/completions": "messages", "/v1/completions": "prompt"}


async def _read_body(receive) -> bytes:
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


def _replay(body: bytes, receive):
    """A ``receive`` that hands the app the body already read, then the real channel."""
    sent = [False]

    async def replay():
        if not sent[0]:
            sent[0] = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return replay


async def _error(send, status: int, message: str, code: str) -> None:
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error",
                                 "code": code}}).encode()
    headers = [(b"content-type", b"application/json")]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


__all__ = ["CHECKED", "OPEN_PATHS", "Gate"]
