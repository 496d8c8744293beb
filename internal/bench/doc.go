// Package bench measures a running duplex hub from the outside: workloads
// that drive it over the network (HTTP, and the streaming transports), the
// latency histograms they record, and the reports `duplex bench` prints.
//
// It talks to a hub only over the network, by URL, exactly as any client
// would: it never imports the hub, an engine or the server, so what it
// measures includes the kernel, the loopback and net/http on both sides.
//
// Entry points: [RunPublish] runs the HTTP publish workload (N keep-alive
// publishers POSTing to /v1/channels/{channel}/messages for a bounded time
// or count); [Latency] records latencies in an HDR histogram; a [Report]
// holds one or more [Run]s and is written as a human table
// ([Report.WriteTable]) or as JSON ([Report.WriteJSON]). [BaselineHandler]
// is the bare net/http handler the publish figures are compared with.
//
// Every workload is bounded by time (and optionally by count) and stops by
// itself; none starts a server but the baseline's.
package bench
