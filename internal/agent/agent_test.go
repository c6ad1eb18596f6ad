package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usbctl/usbctl/internal/notifytest"
)

// fakeDaemon is usbctld as the agent sees it: offers, a stream, answers.
type fakeDaemon struct {
	mu      sync.Mutex
	offers  []Offer
	answers []string
	changed chan struct{}
	breaks  chan struct{} // a receive ends the current Follow
	follows int
}

func (d *fakeDaemon) Offers(ctx context.Context) ([]Offer, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Offer(nil), d.offers...), nil
}

func (d *fakeDaemon) Follow(ctx context.Context, changed func()) error {
	d.mu.Lock()
	d.follows++
	d.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-d.breaks:
			return errors.New("stream broke")
		case <-d.changed:
			changed()
		}
	}
}

func (d *fakeDaemon) Answer(ctx context.Context, o Offer, a Answer) error {
	d.mu.Lock()
	d.answers = append(d.answers, fmt.Sprintf("%s %s %s", o.Device, o.Domain, a))
	var left []Offer
	for _, x := range d.offers {
		if x.key() != o.key() {
			left = append(left, x)
		}
	}
	d.offers = left
	d.mu.Unlock()
	d.changed <- struct{}{}
	return nil
}

func (d *fakeDaemon) set(offers ...Offer) {
	d.mu.Lock()
	d.offers = offers
	d.mu.Unlock()
	d.changed <- struct{}{}
}

// An offer becomes a notification with actions; the action a person clicks
// is the answer usbctld gets; an offer that goes away takes its
// notification with it.
func TestAgentAnswersThroughDBus(t *testing.T) {
	addr := notifytest.SessionBus(t)
	srv := notifytest.NewServer(t, addr)
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	d := &fakeDaemon{changed: make(chan struct{}, 8), breaks: make(chan struct{}, 1),
		offers: []Offer{
			{Device: "001:005", Domain: "win11", What: "Evil <b>Corp</b>\x1b[31m\nUSB Receiver (046d:c52b)"},
			{Device: "001:007", Domain: "work", What: "SanDisk Ultra Fit (0781:5583)", Expires: now.Add(90 * time.Second)},
		}}
	ag := &Agent{Bus: notifytest.Connect(t, addr), Daemon: d, Now: func() time.Time { return now }, RetryMin: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ag.Run(ctx) }()

	byDomain := map[string]notifytest.Note{}
	for range 2 {
		n := srv.Wait(t, 10*time.Second)
		byDomain[strings.TrimPrefix(n.Summary, "USB device for ")] = n
	}
	recv, stick := byDomain["win11"], byDomain["work"]
	if recv.ID == 0 || stick.ID == 0 {
		t.Fatalf("notifications by domain: %+v", byDomain)
	}
	if want := "Evil &lt;b&gt;Corp&lt;/b&gt;?[31m?USB Receiver (046d:c52b) was plugged in. Attach it to win11?"; recv.Body != want {
		t.Errorf("body %q\nwant %q", recv.Body, want)
	}
	if want := []string{"attach", "Attach to win11", "host", "Keep on host", "attach-always", "Always attach to win11", "host-always", "Always keep on host"}; strings.Join(recv.Actions, "|") != strings.Join(want, "|") {
		t.Errorf("actions %q", recv.Actions)
	}
	if recv.Timeout != -1 || stick.Timeout != 90000 || !strings.Contains(stick.Body, "stays on the host in 1m30s") {
		t.Errorf("timeouts %d and %d (%q), want -1 and 90000", recv.Timeout, stick.Timeout, stick.Body)
	}
	if c := stick.Hints["category"].Value(); c != "device.added" {
		t.Errorf("category hint %v", c)
	}

	// A person clicks "Always attach to win11".
	srv.Click(t, recv.ID, "attach-always")
	waitFor(t, "the answer", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return len(d.answers) == 1
	})
	if d.answers[0] != "001:005 win11 attach-always" {
		t.Fatalf("answer %q", d.answers[0])
	}
	// The other offer times out on the daemon's side: its notification goes.
	d.set()
	waitFor(t, "the timed-out offer's notification closed", func() bool { return srv.Closed(stick.ID) })
	// The stream breaks and comes back; a new offer is shown.
	d.breaks <- struct{}{}
	waitFor(t, "follow again", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.follows >= 2
	})
	d.set(Offer{Device: "002:003", Domain: "work", What: "Keyboard"})
	third := srv.Wait(t, 10*time.Second)
	if !strings.Contains(third.Body, "Keyboard") {
		t.Fatalf("third notification %+v", third)
	}
	srv.Click(t, third.ID, "host")
	waitFor(t, "the second answer", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return len(d.answers) == 2
	})
	if d.answers[1] != "002:003 work host" {
		t.Fatalf("answer %q", d.answers[1])
	}
	// A notification nobody answered is closed when the agent stops.
	d.set(Offer{Device: "002:004", Domain: "work", What: "Mouse"})
	fourth := srv.Wait(t, 10*time.Second)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !srv.Closed(fourth.ID) {
		t.Error("the open notification stayed after the agent stopped")
	}
}

// Without a notification server in the session, the agent says so.
func TestAgentNeedsNotificationServer(t *testing.T) {
	addr := notifytest.SessionBus(t)
	ag := &Agent{Bus: notifytest.Connect(t, addr), Daemon: &fakeDaemon{}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := ag.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "notification daemon") {
		t.Fatalf("Run without a server: %v", err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10 s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
