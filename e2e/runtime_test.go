//go:build umockdev

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/usbctl/usbctl/events"
	"github.com/usbctl/usbctl/internal/notifytest"
	"github.com/usbctl/usbctl/internal/sandbox"
	"github.com/usbctl/usbctl/override"
)

// overrides is the runtime assignments usbctl status shows.
func (w *world) overrides() []override.Override { return w.status().Overrides }

// mustCLI runs usbctl and fails the test if it exits non-zero.
func (w *world) mustCLI(args ...string) string {
	w.t.Helper()
	out, code := w.cliCode(args...)
	if code != 0 {
		w.t.Fatalf("usbctl %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

// followEvents runs usbctl events --json until the test ends and collects
// what it prints.
type eventLog struct {
	mu  sync.Mutex
	evs []events.Event
}

func (w *world) followEvents() *eventLog {
	w.t.Helper()
	l := &eventLog{}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bins.usbctl, "--socket", w.d.Socket, "events", "--json")
	cmd.Env = sandbox.CleanEnv()
	out, err := cmd.StdoutPipe()
	if err != nil {
		w.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var ev events.Event
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				l.mu.Lock()
				l.evs = append(l.evs, ev)
				l.mu.Unlock()
			}
		}
	}()
	// The stream is open once usbctld counts the subscriber; a reload is
	// the cheapest event to see it by.
	w.eventually("usbctl events following", 10*time.Second, func() bool {
		w.mustCLI("reload")
		return l.find(func(ev events.Event) bool { return ev.Type == events.ConfigReloaded }) != nil
	})
	return l
}

func (l *eventLog) find(f func(events.Event) bool) *events.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ev := range l.evs {
		if f(ev) {
			ev := ev
			return &ev
		}
	}
	return nil
}

// A device no rule wants goes where usbctl attach says, shows in status
// with who set it and until when, and the override ends with the device:
// replugged (a new device number, as the kernel gives it) it stays on the
// host.
func TestAttachUnwanted(t *testing.T) {
	w := oneGuestRunning(t)
	ev := w.followEvents()
	stick := usb(3, "1-2", "0781", "5583", "4C530001")
	stick.ProductName = "Ultra Fit"
	w.plug(stick)
	w.eventually("the stick listed", 10*time.Second, func() bool { _, ok := unassigned(w.status(), 1, 3); return ok })
	if w.has("g1", alias(stick)) {
		t.Fatal("attached before anyone asked")
	}
	out := w.mustCLI("attach", "ultra", "g1") // a word of its product name
	if !strings.Contains(out, "attached 001:003") || !strings.Contains(out, "until it is unplugged") {
		t.Fatalf("attach said:\n%s", out)
	}
	w.waitAttached("g1", alias(stick))
	ovs := w.overrides()
	if len(ovs) != 1 || ovs[0].Domain != "g1" || ovs[0].Lifetime != override.UntilUnplug || ovs[0].SetBy.UID != 0 || ovs[0].SetBy.Via != "usbctl attach" || ovs[0].SetAt.IsZero() {
		t.Fatalf("status overrides: %+v", ovs)
	}
	st := w.cli("status")
	if !strings.Contains(st, "RUNTIME ASSIGNMENTS") || !strings.Contains(st, "root (usbctl attach)") || !strings.Contains(st, "unplugged") {
		t.Fatalf("status does not show who and until when:\n%s", st)
	}
	ds, _ := domainStatus(w.status(), "g1")
	if len(ds.Attached) != 1 || !strings.Contains(ds.Attached[0].Rule, "usbctl attach") {
		t.Fatalf("status does not say the override placed it: %+v", ds.Attached)
	}
	if e := ev.find(func(e events.Event) bool { return e.Type == events.OverrideSet }); e == nil || e.Domain != "g1" || !strings.Contains(e.By, "root") {
		t.Fatalf("no override-set event: %+v", e)
	}
	if ev.find(func(e events.Event) bool { return e.Type == events.Attached && e.Domain == "g1" }) == nil {
		t.Fatal("no attached event")
	}

	w.unplug(stick)
	w.waitDetached("g1", alias(stick))
	w.eventually("override ended", 10*time.Second, func() bool { return len(w.overrides()) == 0 })
	if e := ev.find(func(e events.Event) bool { return e.Type == events.OverrideEnded }); e == nil || e.Reason != string(override.Unplugged) {
		t.Fatalf("override-ended event: %+v", e)
	}
	again := stick
	again.Dev = 4
	w.plug(again)
	w.eventually("the replugged stick listed", 10*time.Second, func() bool { _, ok := unassigned(w.status(), 1, 4); return ok })
	time.Sleep(300 * time.Millisecond)
	if w.has("g1", alias(again)) {
		t.Fatal("the replugged device followed an override that should have ended")
	}
}

// --for 3s ends by itself: the device goes back to what the rules say.
func TestAttachForExpires(t *testing.T) {
	w := oneGuestRunning(t)
	stick := usb(3, "1-2", "0781", "5583", "")
	w.plug(stick)
	w.eventually("the stick listed", 10*time.Second, func() bool { _, ok := unassigned(w.status(), 1, 3); return ok })
	t0 := time.Now()
	out := w.mustCLI("attach", "1:3", "g1", "--for", "3s")
	if !strings.Contains(out, "until 20") {
		t.Fatalf("attach --for said:\n%s", out)
	}
	w.waitAttached("g1", alias(stick))
	if ovs := w.overrides(); len(ovs) != 1 || ovs[0].Lifetime != override.For || ovs[0].Until.Sub(t0) > 4*time.Second {
		t.Fatalf("overrides %+v", ovs)
	}
	w.eventually("detached after 3 s", 10*time.Second, func() bool { return !w.has("g1", alias(stick)) })
	if d := time.Since(t0); d < 3*time.Second {
		t.Fatalf("detached after %v, before the 3 s were up", d)
	}
	if ovs := w.overrides(); len(ovs) != 0 {
		t.Fatalf("the override outlived its time: %+v", ovs)
	}
}

// A device a rule placed, detached by usbctl detach, stays on the host,
// also across a usbctld restart; usbctl release gives it back to the rule.
func TestDetachSurvivesRestart(t *testing.T) {
	w := oneGuestRunning(t)
	recv := usb(2, "1-1", "046d", "c52b", "")
	w.plugTimed("g1", recv)
	w.mustCLI("detach", "046d:c52b")
	w.waitDetached("g1", alias(recv))
	if ovs := w.overrides(); len(ovs) != 1 || !ovs[0].Host() {
		t.Fatalf("overrides %+v", ovs)
	}
	if why, ok := unassigned(w.status(), 1, 2); !ok || !strings.Contains(why, "usbctl detach") {
		t.Fatalf("status does not say why it is on the host: %q", why)
	}
	w.killDaemon(syscall.SIGTERM)
	w.startDaemon()
	time.Sleep(300 * time.Millisecond) // a sync or two
	if w.has("g1", alias(recv)) {
		t.Fatal("the rule took the device back after a restart")
	}
	if ovs := w.overrides(); len(ovs) != 1 || !ovs[0].Host() {
		t.Fatalf("the override did not survive the restart: %+v", ovs)
	}
	w.mustCLI("release", "1:2")
	w.waitAttached("g1", alias(recv))
}

// usbctl move takes a device from one running guest to another.
func TestMoveBetweenGuests(t *testing.T) {
	w := newWorld(t, "g1", "g2")
	w.writeConfig(oneGuest)
	w.start("g1")
	w.start("g2")
	w.startDaemon()
	recv := usb(2, "1-1", "046d", "c52b", "")
	w.plugTimed("g1", recv)
	out := w.mustCLI("move", "1-1", "g2") // by port
	if !strings.Contains(out, "moved 001:002") || !strings.Contains(out, "from g1 to g2") {
		t.Fatalf("move said:\n%s", out)
	}
	w.waitAttached("g2", alias(recv))
	w.waitDetached("g1", alias(recv))
}

// Ambiguous names are refused with the candidates; an excluded device is
// refused with the exclude named.
func TestAttachRefusals(t *testing.T) {
	w := newWorld(t, "g1")
	w.writeConfig(oneGuest + `exclude "kbd" { ids = ["04d9:0006"] }` + "\n")
	w.start("g1")
	w.startDaemon()
	a, b := usb(3, "1-2", "0781", "5583", "A"), usb(4, "1-3", "0781", "5583", "B")
	kbd := usb(5, "1-4", "04d9", "0006", "")
	w.plug(a)
	w.plug(b)
	w.plug(kbd)
	w.eventually("devices listed", 10*time.Second, func() bool { _, ok := unassigned(w.status(), 1, 5); return ok })
	out, code := w.cliCode("attach", "0781:5583", "g1")
	if code != 1 || !strings.Contains(out, "001:003") || !strings.Contains(out, "001:004") || !strings.Contains(out, "2 devices have vendor:product") {
		t.Fatalf("ambiguous: exit %d\n%s", code, out)
	}
	out, code = w.cliCode("attach", "1:5", "g1")
	if code != 1 || !strings.Contains(out, `exclude "kbd"`) {
		t.Fatalf("excluded: exit %d\n%s", code, out)
	}
	out, code = w.cliCode("attach", "B", "nosuchvm") // by serial, to a domain libvirt lacks
	if code != 1 || !strings.Contains(out, "nosuchvm") {
		t.Fatalf("unknown domain: exit %d\n%s", code, out)
	}
	if len(w.overrides()) != 0 {
		t.Fatal("a refused attach left an override")
	}
}

// --save writes a device block into the domain's file under conf.d,
// keeping the file's comments; the result passes usbctl check and holds
// after the override is released.
func TestSaveKeepsComments(t *testing.T) {
	w := newWorld(t, "g1")
	confd := filepath.Join(w.dir, "conf.d")
	if err := os.Mkdir(confd, 0o755); err != nil {
		t.Fatal(err)
	}
	w.writeConfig("# main file\n")
	g1 := filepath.Join(confd, "g1.hcl")
	orig := "# my guest: keep this comment\ndomain \"g1\" {\n\tpriority = 1   # tabs and alignment too\n\tdevice \"receiver\" { ids = [\"046d:c52b\"] }\n}\n"
	w.writeFile(g1, orig)
	w.start("g1")
	w.startDaemon("--config", confd)
	stick := usb(3, "1-2", "0781", "5583", "4C530001")
	stick.ProductName = "Ultra Fit"
	w.plug(stick)
	w.eventually("the stick listed", 10*time.Second, func() bool { _, ok := unassigned(w.status(), 1, 3); return ok })
	out := w.mustCLI("attach", "4C530001", "g1", "--save")
	if !strings.Contains(out, "saved device") || !strings.Contains(out, "config reloaded") {
		t.Fatalf("attach --save said:\n%s", out)
	}
	w.waitAttached("g1", alias(stick))
	b, err := os.ReadFile(g1)
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	if !strings.HasPrefix(got, strings.TrimSuffix(orig, "}\n")) || !strings.Contains(got, `serial = "4C530001"`) || !strings.Contains(got, `ids    = ["0781:5583"]`) {
		t.Fatalf("saved file:\n%s", got)
	}
	if out, code, _ := runCode(exec.Command(bins.usbctl, "check", w.cfg, confd)); code != 0 {
		t.Fatalf("usbctl check of the saved config: exit %d\n%s", code, out)
	} else if !strings.Contains(out, "2 device rules") {
		t.Fatalf("check: %s", out)
	}
	w.mustCLI("release", "1:3")
	time.Sleep(300 * time.Millisecond)
	if !w.has("g1", alias(stick)) {
		t.Fatal("the saved rule does not hold the device")
	}
	ds, _ := domainStatus(w.status(), "g1")
	if len(ds.Attached) != 1 || !strings.Contains(ds.Attached[0].Rule, `device "usbctl-e2e-ultra-fit"`) || !strings.Contains(ds.Attached[0].Rule, "conf.d/g1.hcl") {
		t.Fatalf("placed by %+v", ds.Attached)
	}
	// And usbctl rule remove takes it out again, comments kept.
	label := strings.Split(strings.Split(got, "device \"")[2], "\"")[0]
	w.mustCLI("rule", "remove", "g1", label)
	if b, _ := os.ReadFile(g1); string(b) != orig {
		t.Fatalf("after rule remove:\n%q\nwant\n%q", b, orig)
	}
	w.waitDetached("g1", alias(stick))
}

// An ask domain offers a plugged device; usbctl agent shows the offer as a
// desktop notification, and the click on "Attach" puts it in the guest.
func TestAskAnsweredByAgent(t *testing.T) {
	w := newWorld(t, "g1")
	w.writeConfig("domain \"g1\" {\n  mode = \"ask\"\n}\n")
	w.start("g1")
	w.startDaemon("--ask-timeout", "60s")
	bus := notifytest.SessionBus(t)
	srv := notifytest.NewServer(t, bus)
	ctx, cancel := context.WithCancel(context.Background())
	agent := exec.CommandContext(ctx, bins.usbctl, "--socket", w.d.Socket, "agent", "-v")
	agent.Env = append(sandbox.CleanEnv(), "DBUS_SESSION_BUS_ADDRESS="+bus)
	var agentOut strings.Builder
	agent.Stdout, agent.Stderr = &agentOut, &agentOut
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = agent.Wait()
		if t.Failed() {
			t.Logf("usbctl agent:\n%s", agentOut.String())
		}
	})
	stick := usb(3, "1-2", "0781", "5583", "")
	stick.ProductName = "Ultra Fit"
	w.plug(stick)
	note := srv.Wait(t, 20*time.Second)
	if !strings.Contains(note.Body, "Ultra Fit") || !strings.Contains(note.Body, "g1") {
		t.Fatalf("notification %+v", note)
	}
	// The agent shows what a status read returned; usbctl pending reads
	// status anew, from the sync after it at the latest.
	var out string
	w.eventually("usbctl pending lists 001:003 for g1", 10*time.Second, func() bool {
		out = w.cli("pending")
		return strings.Contains(out, "001:003") && strings.Contains(out, "g1")
	})
	if w.has("g1", alias(stick)) {
		t.Fatal("attached before the answer")
	}
	srv.Click(t, note.ID, "attach")
	w.waitAttached("g1", alias(stick))
	// virsh shows the attach as soon as the sync applies it; status (and
	// so pending) is published when that sync ends, a moment later.
	w.eventually("usbctl pending empty after the answer", 10*time.Second, func() bool {
		out = w.cli("pending")
		return strings.Contains(out, "no device is waiting")
	})
}

// An offer nobody answers stays on the host.
func TestAskTimesOutToHost(t *testing.T) {
	w := newWorld(t, "g1")
	w.writeConfig("domain \"g1\" {\n  mode = \"ask\"\n}\n")
	w.start("g1")
	w.startDaemon("--ask-timeout", "1s")
	stick := usb(3, "1-2", "0781", "5583", "")
	w.plug(stick)
	w.eventually("offered", 10*time.Second, func() bool { return len(w.status().Offers) == 1 })
	w.eventually("timed out to the host", 10*time.Second, func() bool {
		ovs := w.overrides()
		return len(w.status().Offers) == 0 && len(ovs) == 1 && ovs[0].Host() && ovs[0].SetBy.Via == "offer unanswered"
	})
	if w.has("g1", alias(stick)) {
		t.Fatal("an unanswered offer was attached")
	}
}

// Runtime changes are changes: a member of --control-group may attach, a
// member of the socket's group only reads; each attempt is logged with the
// peer's uid, and the assignment says who set it.
func TestRuntimeChangesNeedControlGroup(t *testing.T) {
	const group, ctlGroup = "usbctl-e2e-rt", "usbctl-e2e-rtctl"
	const member, ctl = "usbctl-e2e-rtin", "usbctl-e2e-rtadm"
	addGroup(t, group)
	addGroup(t, ctlGroup)
	memberUID, _ := addUser(t, member, "nogroup", group)
	ctlUID, _ := addUser(t, ctl, "nogroup", group, ctlGroup)
	pub, cli := publicDir(t, 0)
	w := newWorld(t, "g1")
	w.writeConfig(oneGuest)
	w.start("g1")
	sock := pub + "/usbctl.sock"
	w.startDaemonAt(sock, "--socket-group", group, "--control-group", ctlGroup)
	stick := usb(3, "1-2", "0781", "5583", "")
	w.plug(stick)
	w.eventually("the stick listed", 10*time.Second, func() bool { _, ok := unassigned(w.status(), 1, 3); return ok })

	if out, code := asUser(t, cli, sock, as(member), "attach", "1:3", "g1"); code == 0 || !strings.Contains(out, "needs root or a member of group "+ctlGroup) {
		t.Fatalf("socket group member attaching: exit %d\n%s", code, out)
	}
	if out, code := asUser(t, cli, sock, as(member), "pending"); code != 0 {
		t.Fatalf("socket group member reading pending: exit %d\n%s", code, out)
	}
	if out, code := asUser(t, cli, sock, as(ctl), "attach", "1:3", "g1"); code != 0 || !strings.Contains(out, "attached 001:003") {
		t.Fatalf("control group member attaching: exit %d\n%s", code, out)
	}
	w.waitAttached("g1", alias(stick))
	ovs := w.overrides()
	if len(ovs) != 1 || ovs[0].SetBy.UID != ctlUID || ovs[0].SetBy.User != ctl {
		t.Fatalf("the assignment does not say who set it: %+v", ovs)
	}
	log := w.d.LogText()
	for _, want := range []string{
		fmt.Sprintf(`msg="change refused" component=api what="usbctl attach, detach and move" uid=%d `, memberUID),
		fmt.Sprintf(`msg="change requested" component=api what="usbctl attach, detach and move" uid=%d `, ctlUID),
		fmt.Sprintf(`msg="runtime assignment set" component=controller uid=%d user=%s`, ctlUID, ctl),
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s", want)
		}
	}
}
