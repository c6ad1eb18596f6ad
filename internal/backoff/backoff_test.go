package backoff

import (
	"testing"
	"time"
)

func TestDelayDoublesToTheCap(t *testing.T) {
	p := Policy{Min: 100 * time.Millisecond, Max: time.Second}
	want := []time.Duration{100, 100, 100, 200, 400, 800, 1000, 1000}
	for i, n := range []int{-1, 0, 1, 2, 3, 4, 5, 6} {
		if got := p.Delay(n); got != want[i]*time.Millisecond {
			t.Errorf("Delay(%d) = %v, want %v", n, got, want[i]*time.Millisecond)
		}
	}
	// No overflow however long it fails.
	if got := p.Delay(1 << 30); got != time.Second {
		t.Errorf("Delay(2^30) = %v, want the cap", got)
	}
	// A Max below Min: Min is all it waits (callers default Max above Min).
	if got := (Policy{Min: time.Second, Max: time.Millisecond}).Delay(3); got != time.Millisecond {
		t.Errorf("Delay with Max < Min = %v, want Max", got)
	}
}

func TestJitterStaysInItsBand(t *testing.T) {
	p := Policy{Min: time.Second, Max: time.Minute, Jitter: 0.1}
	lo, hi := time.Hour, time.Duration(0)
	for range 2000 {
		d := p.Delay(3) // 4 s ± 10 %
		lo, hi = min(lo, d), max(hi, d)
	}
	if lo < 3600*time.Millisecond || hi > 4400*time.Millisecond {
		t.Fatalf("Delay(3) spread over [%v, %v], want within 4 s ± 10 %%", lo, hi)
	}
	if hi-lo < 400*time.Millisecond {
		t.Fatalf("Delay(3) spread over [%v, %v] only: no jitter", lo, hi)
	}
}
