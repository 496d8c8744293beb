"""ws_poison.py URL CHANNEL: the python3-websockets twin of
e2e/node/ws_poison.js (run it with /usr/bin/python3): a subscriber that
must survive attempts to poison its channel. It prints {"ready": true}
once subscribed; after the Go test's one good message it publishes a lone
surrogate itself, reads history, closes with 1000 and prints its report.
python3-websockets fails the connection with 1007 on a text frame that is
not valid UTF-8, so a poisoned channel shows here as a 1007 close.
"""
import asyncio
import json
import sys

import websockets


async def main(url, channel):
    report = {"messages": [], "poison": None, "history": None, "close": None}
    async with websockets.connect(url, subprotocols=["duplex.v1"]) as ws:
        await ws.send(json.dumps({"id": 1, "type": "subscribe", "channel": channel, "offset": 0}))
        try:
            while True:
                f = json.loads(await ws.recv())
                if f.get("id") == 1:
                    print(json.dumps({"ready": True}), flush=True)
                elif f["type"] == "message":
                    report["messages"].append({"offset": f["offset"], "data": f["data"]})
                    # Written by hand: the JSON text holds the escape \ud800, alone.
                    await ws.send('{"id":2,"type":"publish","channel":%s,"data":{"a":"\\ud800"}}' % json.dumps(channel))
                elif f.get("id") == 2:
                    report["poison"] = {"type": f["type"], "code": f.get("code"), "message": f.get("message")}
                    await ws.send(json.dumps({"id": 3, "type": "history", "channel": channel, "after": 0}))
                elif f.get("id") == 3:
                    report["history"] = [{"offset": m["offset"], "data": m["data"]} for m in f["messages"]]
                    await ws.close(1000, "done")
        except websockets.ConnectionClosed:
            pass
        report["close"] = {"code": ws.close_code}
    print(json.dumps(report), flush=True)


asyncio.run(asyncio.wait_for(main(sys.argv[1], sys.argv[2]), 30))
