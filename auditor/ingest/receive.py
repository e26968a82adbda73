"""The receive loop's wait for the next message, without aiocometd's three tasks per message.

`Client.receive()` starts three asyncio tasks on every call (the queue's get, a connection
timeout watcher, a server-disconnect watcher) and waits on them together: at realistic rates
(a notification every few seconds per agent) that is once per notification, a tenth of its
cost. Here the two watchers run once per session, and report a loss by putting a marker in
the same incoming queue; waiting for a message is then a plain `await queue.get()`. The
errors raised are the library's own (TransportTimeoutError, ServerError after closing the
client), so Source treats them as before.

Uses aiocometd-noloop internals (`_incoming_queue`, `_transport`, `_wait_connection_timeout`,
`_verify_response`); the dependency is pinned to the version this was written against.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiocometd_noloop import Client
from aiocometd_noloop.constants import TransportState
from aiocometd_noloop.exceptions import ServerError, TransportTimeoutError


class _Lost:
    """Put in the incoming queue by the watcher: the session is over."""

    def __init__(self, server_disconnected: bool) -> None:
        self.server_disconnected = server_disconnected


class _Failed:
    """Put in the incoming queue when taking a reply's messages failed (Receiver.fail)."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class Receiver:
    def __init__(self, client: Client, connection_timeout: float) -> None:
        self.client = client
        self.queue: asyncio.Queue[Any] = client._incoming_queue
        self._connection_timeout = connection_timeout
        self._watcher = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        transport = self.client._transport
        watches = [
            asyncio.ensure_future(transport.wait_for_state(TransportState.SERVER_DISCONNECTED))
        ]
        if self._connection_timeout:
            watches.append(
                asyncio.ensure_future(
                    self.client._wait_connection_timeout(self._connection_timeout)
                )
            )
        try:
            done, _ = await asyncio.wait(watches, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for watch in watches:
                watch.cancel()
        self.queue.put_nowait(_Lost(server_disconnected=watches[0] in done))

    async def next(self) -> dict[str, Any]:
        """The next message; raises as Client.receive() does when the session is lost."""
        return await self.check(await self.queue.get())

    def next_nowait(self) -> dict[str, Any] | None:
        """A message already queued, or None (the marker of a loss is put back for next())."""
        if self.queue.empty():
            return None
        message = self.queue.get_nowait()
        if isinstance(message, _Lost | _Failed):
            self.queue.put_nowait(message)
            return None
        self.client._verify_response(message)
        result: dict[str, Any] = message
        return result

    def fail(self, error: BaseException) -> None:
        """Messages handed over directly (the transport's sink) could not be taken: the
        receive loop raises `error`, ending the session as if it had failed itself."""
        self.queue.put_nowait(_Failed(error))

    async def check(self, message: Any) -> dict[str, Any]:
        if isinstance(message, _Failed):
            raise message.error
        if isinstance(message, _Lost):
            if message.server_disconnected:
                await self.client.close()
                raise ServerError(
                    "Connection closed by the server", self.client._transport.last_connect_result
                )
            raise TransportTimeoutError("Lost connection with the server.")
        self.client._verify_response(message)
        result: dict[str, Any] = message
        return result

    def pending(self) -> list[dict[str, Any]]:
        """What already arrived (at cancellation: kept, not lost)."""
        messages = []
        while not self.queue.empty():
            message = self.queue.get_nowait()
            if not isinstance(message, _Lost | _Failed):
                messages.append(message)
        return messages

    def close(self) -> None:
        if not self._watcher.done():
            self._watcher.cancel()
        elif not self._watcher.cancelled():
            self._watcher.exception()  # retrieved, so asyncio does not log it as lost
