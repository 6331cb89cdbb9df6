"""The bench scripts' Engine API client: one keep-alive HTTP/1.1
connection to ketchd's Unix socket (Content-Length and chunked answers)."""

import socket


class Api:
    def __init__(self, sock):
        self.conn = socket.socket(socket.AF_UNIX)
        self.conn.connect(sock)
        self.rf = self.conn.makefile("rb")

    def call(self, method, path, body=b""):
        """One request; the status and body of its answer."""
        self.conn.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        status = int(self.rf.readline().split()[1])
        length, chunked = 0, False
        while (line := self.rf.readline().strip()):
            k, _, v = line.decode().partition(":")
            if k.lower() == "content-length":
                length = int(v)
            elif k.lower() == "transfer-encoding":
                chunked = True
        if not chunked:
            return status, self.rf.read(length)
        data = b""
        while (size := int(self.rf.readline().strip(), 16)):
            data += self.rf.read(size)
            self.rf.readline()
        self.rf.readline()
        return status, data
