"""ws_deflate.py URL CHANNEL N: opens duplex's /v1/ws with Debian's
python3-websockets, which offers permessage-deflate by default, subscribes
to CHANNEL, publishes N messages of about 2 KiB (compressed by websockets)
and prints one JSON object: the extension the hub agreed to and the data of
the N messages it got back. Run it with /usr/bin/python3.
"""
import asyncio
import json
import sys

import websockets


async def main(url, channel, n):
    report = {"extensions": None, "messages": []}
    async with websockets.connect(url, subprotocols=["duplex.v1"], max_size=1 << 20) as ws:
        report["extensions"] = ws.response_headers.get("Sec-WebSocket-Extensions", "")
        await ws.send(json.dumps({"id": 1, "type": "subscribe", "channel": channel}))
        while True:
            f = json.loads(await ws.recv())
            if f["type"] == "ok" and f.get("id") == 1:
                break
        for i in range(1, n + 1):
            await ws.send(json.dumps({"id": "p%d" % i, "type": "publish", "channel": channel,
                                      "data": {"n": i, "text": "ünïcødé " * 200}}))
        while len(report["messages"]) < n:
            f = json.loads(await ws.recv())
            if f["type"] == "message":
                report["messages"].append(f["data"])
    print(json.dumps(report))


asyncio.run(asyncio.wait_for(main(sys.argv[1], sys.argv[2], int(sys.argv[3])), 30))
