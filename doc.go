// Package duplex is the root of the duplex module: a real-time
// publish/subscribe hub served over every client–server transport, its Go
// client, a multi-protocol proxy and a benchmark. The binary is cmd/duplex;
// the public packages are msg (wire types) and client (the Go client).
// This package holds only module-wide tests, such as the import-direction
// check.
package duplex
