"""Fake ESC/POS printers: a TCP one on 127.0.0.1 and a serial one on a pty."""

from __future__ import annotations

import asyncio
import contextlib
import os

ONLINE, PAPER_OK = 0x12, 0x12


class PrinterStream:
    """The printer's side of the byte stream: data is kept, ``DLE EOT n`` is answered."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.queries: list[int] = []
        self.status = {1: ONLINE, 2: 0x12, 3: 0x12, 4: PAPER_OK}
        self.answer = True
        self.drop_jobs = 0  # close the connection on this many jobs, as if the printer died
        self._pending = b""

    def feed(self, data: bytes) -> bytes:
        """Take bytes from the host; return the printer's replies."""
        buf, replies = self._pending + data, bytearray()
        while buf:
            if buf[0] == 0x10:
                if len(buf) < 3:
                    break
                if buf[1] == 0x04:
                    self.queries.append(buf[2])
                    if self.answer:
                        replies.append(self.status.get(buf[2], 0x12))
                    buf = buf[3:]
                    continue
            self.received.append(buf[0])
            buf = buf[1:]
        self._pending = buf
        return bytes(replies)


class FakeNetworkPrinter(PrinterStream):
    def __init__(self, port: int = 0) -> None:
        super().__init__()
        self.port = port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> FakeNetworkPrinter:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while data := await reader.read(4096):
                if self.drop_jobs and not data.startswith(b"\x10\x04"):
                    self.drop_jobs -= 1
                    break
                replies = self.feed(data)
                if replies:
                    writer.write(replies)
        except ConnectionError:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


class FakeSerialPrinter(PrinterStream):
    """A pty: the driver opens the slave side as its serial port."""

    def __init__(self) -> None:
        super().__init__()
        self.master, self._slave = os.openpty()
        self.device = os.ttyname(self._slave)
        os.set_blocking(self.master, False)
        asyncio.get_running_loop().add_reader(self.master, self._readable)

    def _readable(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            replies = self.feed(os.read(self.master, 4096))
            if replies:
                os.write(self.master, replies)

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.master)
        os.close(self.master)
        os.close(self._slave)
