#!/usr/bin/python3
"""Send one UDP datagram through a SOCKS5 proxy with PySocks (Debian
python3-socks) and print the answer.

usage: pysocks_udp.py PROXY_HOST PROXY_PORT HOST PORT MESSAGE

Run it with /usr/bin/python3: the python3 first on PATH may not see Debian
packages.
"""
import socket
import sys

import socks


def main():
    phost, pport, host, port, message = sys.argv[1:6]
    s = socks.socksocket(socket.AF_INET, socket.SOCK_DGRAM)
    s.set_proxy(socks.SOCKS5, phost, int(pport))
    s.settimeout(10)
    s.bind(("127.0.0.1", 0))  # performs the UDP ASSOCIATE
    s.sendto(message.encode(), (host, int(port)))
    data, src = s.recvfrom(65535)
    print("%s from %s:%d" % (data.decode(), src[0], src[1]))
    s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
