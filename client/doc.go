// Package client is the Go client of a duplex hub: publish, read history,
// and subscribe to channels over WebSocket, Server-Sent Events, NDJSON
// streaming or long polling, through HTTP and SOCKS proxies.
//
// Entry points: [Dial] returns a [Client]; [Client.Subscribe] returns a
// [Subscription] whose [Subscription.Next] yields [Event] values (messages
// and gap notices); [Client.Publish], [Client.History] and [Client.Info]
// are single calls.
//
// What a subscription promises: messages of each channel arrive in offset
// order, each once, across reconnects and transport changes. The client
// resumes from the cursor of the last message it queued, and it drops
// anything at or below it a second time, as a second line of defence behind
// the hub. Whatever could not be recovered (history trimmed, a hub restarted
// with the memory engine) arrives as a gap notice, never as silence.
// [Subscription.Cursor] is where to resume from in a later run.
//
// Transports: [Auto] (the default) tries WebSocket, falls back to SSE and
// then to long polling when a transport is refused or keeps dying after it
// opened, and remembers what worked for the Client's later connections.
// Reconnects wait a full-jitter exponential backoff. Close codes and HTTP
// statuses that say "this will not work" end a subscription with an error
// instead of retrying.
//
// Proxies: [DialOptions.Proxy] or the environment (HTTP_PROXY, HTTPS_PROXY,
// ALL_PROXY, NO_PROXY); schemes http, https, socks4, socks4a, socks5 and
// socks5h with credentials in the URL. SOCKS4 and 4a are implemented here;
// SOCKS5 is golang.org/x/net/proxy.
//
// The package imports only the msg package of duplex, so programs that
// embed it pull in none of the hub. It does not implement the hub side, and
// it does not persist cursors: storing [Subscription.Cursor] is the
// caller's business.
package client
