//go:build !unix

package bench

import "time"

// processCPU returns 0: the CPU time used is not measured here.
func processCPU() time.Duration { return 0 }
