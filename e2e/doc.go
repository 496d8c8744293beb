// Package e2e holds duplex's end-to-end tests: real hubs, proxies and
// third-party peers (npm ws, python websockets, curl, chromium, dante,
// squid…) over real sockets on 127.0.0.1. It has no non-test code but this
// file.
package e2e
