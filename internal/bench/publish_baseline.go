package bench

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// BaselineHandler is the floor the publish workload is compared with: a
// bare net/http handler that answers every request as the hub answers a
// publish — it reads the body and replies 201 with a small JSON object of
// the same shape — without validating, storing or delivering anything. What
// the hub reaches under the same load, in the same run, over what this
// reaches is the share of net/http's own ceiling the hub keeps. GET
// /metrics answers the process's process_cpu_seconds_total, as the hub's
// does.
func BaselineHandler() http.Handler {
	var offset atomic.Uint64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/metrics" {
			// What the load generator reads to measure CPU per publish,
			// as it does from the hub's /metrics.
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			fmt.Fprintf(w, "process_cpu_seconds_total %g\n", processCPU().Seconds())
			return
		}
		io.Copy(io.Discard, r.Body)
		b := make([]byte, 0, 96)
		b = append(b, `{"channel":"bench","epoch":"baseline","offset":`...)
		b = strconv.AppendUint(b, offset.Add(1), 10)
		b = append(b, `,"time":`...)
		b = strconv.AppendInt(b, time.Now().UnixMilli(), 10)
		b = append(b, "}\n"...)
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(http.StatusCreated)
		w.Write(b)
	})
}
