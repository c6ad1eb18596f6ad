// Package stats holds the summary statistics usbctl's benchmarks and tests
// report, so that every figure called "p99" means the same thing.
package stats

import "time"

// Percentile returns the nearest-rank q-quantile (0 < q ≤ 1) of sorted: the
// smallest value that at least q of the values do not exceed. Zero for no
// values.
func Percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
