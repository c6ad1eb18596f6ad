package events

import (
	"errors"
	"testing"
	"time"
)

func TestHub(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	h := NewHub(func() time.Time { return t0 })
	a, b := h.Subscribe(8), h.Subscribe(2)
	h.Publish(Event{Type: DevicePlugged}, Event{Type: Attached, Domain: "win11"})
	for _, s := range []*Sub{a, b} {
		e1, e2 := <-s.C(), <-s.C()
		if e1.Seq != 1 || e2.Seq != 2 || e1.Type != DevicePlugged || e2.Domain != "win11" || !e1.Time.Equal(t0) {
			t.Fatalf("got %+v %+v", e1, e2)
		}
	}
	// b falls behind by more than its buffer: it is cut off, a is not.
	h.Publish(Event{Type: Detached}, Event{Type: Detached}, Event{Type: Detached})
	select {
	case <-b.Done():
	default:
		t.Fatal("a reader too slow stays subscribed")
	}
	if !errors.Is(b.Err(), ErrTooSlow) {
		t.Fatalf("Err = %v", b.Err())
	}
	if h.Subscribers() != 1 || a.Err() != nil {
		t.Fatalf("%d subscribers, a.Err %v", h.Subscribers(), a.Err())
	}
	for i := 0; i < 3; i++ {
		if ev := <-a.C(); ev.Seq != uint64(3+i) {
			t.Fatalf("seq %d", ev.Seq)
		}
	}
	a.Close()
	a.Close() // twice is fine
	if h.Subscribers() != 0 || a.Err() != nil {
		t.Fatalf("after Close: %d subscribers, Err %v", h.Subscribers(), a.Err())
	}
	h.Publish(Event{Type: ConfigReloaded}) // nobody listens: nothing blocks
}
