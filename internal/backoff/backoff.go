// Package backoff is the capped exponential backoff of every retry in
// usbctl: a failing action in the controller, the libvirt reconnect, the
// re-creation of a broken udev monitor.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Policy waits Min after the first failure and twice as long after each
// further one, never more than Max. Jitter spreads each wait by up to ±that
// fraction (0.1: ±10 %), so failures that started together do not retry in
// lockstep. A Policy is a value: the caller counts the failures.
type Policy struct {
	Min, Max time.Duration
	Jitter   float64
}

// Delay returns the wait after the n-th failure in a row (n ≥ 1; smaller n
// count as 1).
func (p Policy) Delay(n int) time.Duration {
	d := p.Min
	for i := 1; i < n && d < p.Max; i++ {
		d *= 2
	}
	d = min(d, p.Max)
	if p.Jitter > 0 {
		d += time.Duration(float64(d) * p.Jitter * (2*rand.Float64() - 1))
	}
	return d
}
