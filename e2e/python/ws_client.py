"""ws_client.py URL CHANNEL PRE: drives duplex's /v1/ws with Debian's
python3-websockets (run it with /usr/bin/python3) and prints what it saw as
one JSON object, the same shape as e2e/node/ws_client.js reports.

On one connection it subscribes from offset 0, publishes 20 messages from a
sender task while the receiver reads the replay, the replies and its own
messages, then asks for history, unsubscribes, pings and sends a command of
an unknown type.
"""
import asyncio
import json
import sys

import websockets

N = 20


async def main(url, channel, pre):
    report = {"protocol": None, "subscribe": None, "publishes": [], "messages": [],
              "history": None, "unsubscribe": None, "pong": None, "unknown": None,
              "order": [], "close": None}
    async with websockets.connect(url, subprotocols=["duplex.v1"], max_size=1 << 20) as ws:
        report["protocol"] = ws.subprotocol

        async def recv():
            f = json.loads(await ws.recv())
            report["order"].append(f["type"] + (":" + str(f["id"]) if "id" in f else ""))
            return f

        async def call(cmd):
            await ws.send(json.dumps(cmd))
            return await recv()

        report["subscribe"] = await call({"id": 1, "type": "subscribe", "channel": channel, "offset": 0})

        async def sender():
            for i in range(1, N + 1):
                await ws.send(json.dumps({"id": "p%d" % i, "type": "publish", "channel": channel,
                                          "data": {"n": i, "s": "ünïcødé"}}))

        task = asyncio.ensure_future(sender())
        while len(report["messages"]) < pre + N or len(report["publishes"]) < N:
            f = await recv()
            if f["type"] == "message":
                report["messages"].append({"offset": f["offset"], "data": f["data"], "epoch": f["epoch"]})
            elif f["type"] == "ok":
                report["publishes"].append({"id": f["id"], "offset": f["offset"], "epoch": f["epoch"], "time": f["time"]})
            else:
                raise RuntimeError("unexpected frame %r" % f)
        await task

        h = await call({"id": "h", "type": "history", "channel": channel, "after": pre, "limit": 5})
        report["history"] = {"id": h["id"], "type": h["type"], "offsets": [m["offset"] for m in h.get("messages", [])], "next": h.get("next")}
        report["unsubscribe"] = await call({"id": "u", "type": "unsubscribe", "channel": channel})
        report["pong"] = await call({"id": "x", "type": "ping"})
        report["unknown"] = await call({"id": 99, "type": "dance"})
        await ws.close(1000, "done")
        report["close"] = {"code": ws.close_code, "reason": ws.close_reason}
    print(json.dumps(report))


if __name__ == "__main__":
    url, channel, pre = sys.argv[1], sys.argv[2], int(sys.argv[3])
    asyncio.run(asyncio.wait_for(main(url, channel, pre), 30))
