"""ws_probes.py HOST:PORT: RFC 6455 protocol probes against duplex's /v1/ws
and /v1/echo, sent with Debian's python3-autobahn (WebSocketClientProtocol
.sendFrame writes deliberately broken frames: the engine of the Autobahn
test suite). Run it with /usr/bin/python3.

Prints one JSON object a line per probe: the path, the probe, the close code
the hub sent (null if it sent none), whether the TCP connection ended, and
the data messages it sent before closing. The Go test (e2e/ws_probes_test.go)
holds the expected codes.
"""
import json
import struct
import sys

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, reactor

PING_CMD = b'{"id":1,"type":"ping"}'
BAD_UTF8 = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64"


def close_payload(code, reason=b""):
    return struct.pack("!H", code) + reason


# name -> function(protocol) sending the probe. Probes that are valid end
# with a normal close from the client, so the hub's reply is seen first.
PROBES = {
    "rsv1": lambda p: p.sendFrame(1, PING_CMD, rsv=4),
    "rsv2": lambda p: p.sendFrame(1, PING_CMD, rsv=2),
    "rsv3": lambda p: p.sendFrame(1, PING_CMD, rsv=1),
    "opcode3": lambda p: p.sendFrame(3, PING_CMD),
    "opcode11": lambda p: p.sendFrame(11, b"x"),
    "fragmented_ping": lambda p: (p.sendFrame(9, b"he", fin=False), p.sendFrame(0, b"llo")),
    "ping_126": lambda p: p.sendFrame(9, b"x" * 126),
    "unmasked": lambda p: (setattr(p, "maskClientFrames", False), p.sendFrame(1, PING_CMD)),
    "invalid_utf8": lambda p: p.sendFrame(1, BAD_UTF8),
    "invalid_utf8_fragment": lambda p: (p.sendFrame(1, b'{"id":1,', fin=False), p.sendFrame(0, b"\xed\xa0\x80", fin=False)),
    "close_code_1004": lambda p: p.sendFrame(8, close_payload(1004)),
    "close_code_999": lambda p: p.sendFrame(8, close_payload(999)),
    "close_code_5000": lambda p: p.sendFrame(8, close_payload(5000)),
    "close_1_byte": lambda p: p.sendFrame(8, b"\x03"),
    "close_bad_utf8_reason": lambda p: p.sendFrame(8, close_payload(1000, BAD_UTF8)),
    "continuation_first": lambda p: p.sendFrame(0, b"x"),
    "new_message_in_fragmented": lambda p: (p.sendFrame(1, b'{"id":', fin=False), p.sendFrame(1, b'1}')),
    "ping_inside_fragmented": lambda p: (p.sendFrame(1, b'{"id":1,', fin=False), p.sendFrame(9, b"mid"),
                                         p.sendFrame(0, b'"type":"ping"}'), p.later_close()),
    "close_normal": lambda p: p.sendFrame(8, close_payload(1000, "bye ✓".encode())),
    "binary": lambda p: (p.sendFrame(2, PING_CMD), p.later_close()),
}


class Probe(WebSocketClientProtocol):
    def onOpen(self):
        self.factory.result["open"] = True
        PROBES[self.factory.probe](self)

    def later_close(self):
        # Give the hub time to answer before the client closes.
        reactor.callLater(0.5, lambda: self.sendClose(1000) if self.state == self.STATE_OPEN else None)

    def onMessage(self, payload, isBinary):
        self.factory.result["messages"].append(payload.decode("utf-8", "replace"))

    def onCloseFrame(self, code, reasonRaw):
        self.factory.result["code"] = code
        self.factory.result["reason"] = (reasonRaw or b"").decode("utf-8", "replace")
        return super().onCloseFrame(code, reasonRaw)

    def connectionLost(self, reason):
        super().connectionLost(reason)
        if not self.factory.done.called:
            self.factory.result["tcp_closed"] = True
            self.factory.done.callback(None)


def run_probe(hostport, path, name):
    url = "ws://%s%s" % (hostport, path)
    f = WebSocketClientFactory(url)
    # Generous handshake timeouts: the test runs on loaded CI machines, and
    # the codes, not the speed, are what it checks.
    f.setProtocolOptions(closeHandshakeTimeout=5, serverConnectionDropTimeout=5, openHandshakeTimeout=10)
    f.protocol = Probe
    f.probe = name
    f.result = {"path": path, "probe": name, "code": None, "reason": "", "messages": [], "open": False, "tcp_closed": False}
    f.done = defer.Deferred()
    host, port = hostport.rsplit(":", 1)
    connector = reactor.connectTCP(host, int(port), f)

    def timeout():
        if not f.done.called:
            f.result["timeout"] = True
            connector.disconnect()
            f.done.callback(None)
    call = reactor.callLater(20, timeout)
    f.done.addCallback(lambda _: (call.cancel() if call.active() else None, f.result)[1])
    return f.done


@defer.inlineCallbacks
def main(hostport):
    try:
        for path in ("/v1/ws", "/v1/echo"):
            for name in PROBES:
                res = yield run_probe(hostport, path, name)
                print(json.dumps(res), flush=True)
    finally:
        reactor.stop()


if __name__ == "__main__":
    reactor.callWhenRunning(main, sys.argv[1])
    reactor.run()
