#!/usr/bin/python3
"""HTTP GET through a SOCKS proxy with PySocks (Debian python3-socks).

usage: pysocks_get.py socks4|socks4a|socks5|socks5h PROXY_HOST PROXY_PORT HOST PORT PATH [USER [PASS]]

Prints the response status line and body; exits 1 on a proxy error, with
the PySocks error on stderr. Run it with /usr/bin/python3: the python3
first on PATH may not see Debian packages.
"""
import sys

import socks


def main():
    kind, phost, pport, host, port, path = sys.argv[1:7]
    user = sys.argv[7] if len(sys.argv) > 7 else None
    password = sys.argv[8] if len(sys.argv) > 8 else None
    types = {
        "socks4": (socks.SOCKS4, False),
        "socks4a": (socks.SOCKS4, True),
        "socks5": (socks.SOCKS5, False),
        "socks5h": (socks.SOCKS5, True),
    }
    ptype, rdns = types[kind]
    s = socks.socksocket()
    s.settimeout(10)
    s.set_proxy(ptype, phost, int(pport), rdns=rdns, username=user, password=password)
    try:
        s.connect((host, int(port)))
    except socks.ProxyError as e:
        print("proxy error:", e, file=sys.stderr)
        return 1
    s.sendall(("GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" % (path, host)).encode())
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    print(head.split(b"\r\n")[0].decode())
    print(body.decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
