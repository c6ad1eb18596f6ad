package override

import (
	"testing"
	"time"
)

func TestTrackOffers(t *testing.T) {
	timeout := time.Minute
	p := Planned{Device: stick, Domain: "win11", Rule: `domain "win11" mode ask`}
	open, started, gone, expired := TrackOffers(nil, []Planned{p}, t0, timeout)
	if len(open) != 1 || len(started) != 1 || len(gone)+len(expired) != 0 {
		t.Fatalf("first: %v %v %v %v", open, started, gone, expired)
	}
	if o := open[0]; !o.Since.Equal(t0) || !o.Expires.Equal(t0.Add(timeout)) || o.Rule != p.Rule {
		t.Fatalf("offer %+v", o)
	}
	// Still offered 30 s later: the same offer, nothing new.
	open2, started, gone, expired := TrackOffers(open, []Planned{p}, t0.Add(30*time.Second), timeout)
	if len(open2) != 1 || !open2[0].Since.Equal(t0) || len(started)+len(gone)+len(expired) != 0 {
		t.Fatalf("later: %v %v %v %v", open2, started, gone, expired)
	}
	// Time up: expired, no longer open.
	open3, _, _, expired := TrackOffers(open2, []Planned{p}, t0.Add(timeout), timeout)
	if len(open3) != 0 || len(expired) != 1 || expired[0].Device.Key() != stick.Key() {
		t.Fatalf("expiry: %v %v", open3, expired)
	}
	// Answered (Plan no longer offers it): gone.
	_, _, gone, _ = TrackOffers(open2, nil, t0.Add(40*time.Second), timeout)
	if len(gone) != 1 {
		t.Fatalf("gone: %v", gone)
	}
	// A replugged device (new number) is a new offer, with a new clock.
	re := stick
	re.Dev = 9
	open4, started, gone, _ := TrackOffers(open2, []Planned{{Device: re, Domain: "win11"}}, t0.Add(50*time.Second), timeout)
	if len(open4) != 1 || len(started) != 1 || len(gone) != 1 || !open4[0].Since.Equal(t0.Add(50*time.Second)) {
		t.Fatalf("replug: %v %v %v", open4, started, gone)
	}
	// One device offered to another domain is another offer.
	_, started, gone, _ = TrackOffers(open2, []Planned{{Device: stick, Domain: "work"}}, t0.Add(50*time.Second), timeout)
	if len(started) != 1 || len(gone) != 1 {
		t.Fatalf("other domain: %v %v", started, gone)
	}
	if n := NextExpiry([]Offer{{Expires: t0.Add(time.Hour)}, {Expires: t0.Add(time.Second)}}); !n.Equal(t0.Add(time.Second)) {
		t.Fatalf("NextExpiry %v", n)
	}
	if !NextExpiry(nil).IsZero() {
		t.Fatal("NextExpiry of none")
	}
}
