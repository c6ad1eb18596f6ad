//go:build umockdev

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/usbctl/usbctl/internal/sandbox"
)

// Real users and groups for access tests, removed when the test ends.

func addGroup(t *testing.T, name string) {
	t.Helper()
	run(t, "groupadd", "--system", name)
	t.Cleanup(func() { _ = exec.Command("groupdel", name).Run() })
}

// addUser adds a system user without home or shell, with primary group
// primary ("" for a group of its own name) and supplementary groups.
func addUser(t *testing.T, name, primary string, groups ...string) (uid, gid uint32) {
	t.Helper()
	args := []string{"--system", "-M", "-s", "/usr/sbin/nologin"}
	if primary == "" {
		args = append(args, "-U")
	} else {
		args = append(args, "-N", "-g", primary)
	}
	if len(groups) > 0 {
		args = append(args, "-G", strings.Join(groups, ","))
	}
	run(t, "useradd", append(args, name)...)
	t.Cleanup(func() {
		_ = exec.Command("userdel", name).Run()
		if primary == "" {
			_ = exec.Command("groupdel", name).Run() // if userdel left it
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return atou(t, u.Uid), atou(t, u.Gid)
}

func groupID(t *testing.T, name string) uint32 {
	t.Helper()
	g, err := user.LookupGroup(name)
	if err != nil {
		t.Fatalf("group %s: %v", name, err)
	}
	return atou(t, g.Gid)
}

func atou(t *testing.T, s string) uint32 {
	t.Helper()
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(n)
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// publicDir is a directory under /run that others may traverse (the test's
// temp dirs are 0700), owned by owner as systemd's RuntimeDirectory= would
// be, with a copy of the CLI anyone may run.
func publicDir(t *testing.T, owner uint32) (dir, cli string) {
	t.Helper()
	dir, err := os.MkdirTemp("/run", "usbctl-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, int(owner), -1); err != nil {
		t.Fatal(err)
	}
	cli = filepath.Join(dir, "usbctl")
	if b, err := os.ReadFile(bins.usbctl); err != nil || os.WriteFile(cli, b, 0o755) != nil {
		t.Fatal("copy usbctl", err)
	}
	return dir, cli
}

// asUser runs the CLI at cli against sock under setpriv with the
// credentials creds (setpriv options), and returns its output and exit
// status.
func asUser(t *testing.T, cli, sock string, creds []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command("setpriv", append(append(creds, "--", cli, "--socket", sock), args...)...)
	cmd.Env = sandbox.CleanEnv()
	out, code, err := runCode(cmd)
	if err != nil {
		t.Fatalf("setpriv %v: %v\n%s", creds, err, out)
	}
	return out, code
}

// as is the credentials of user name from the user database, as a login
// gives them (setpriv --init-groups).
func as(name string) []string {
	return []string{"--reuid=" + name, "--regid=" + primaryGroup(name), "--init-groups"}
}

func primaryGroup(name string) string {
	u, err := user.Lookup(name)
	if err != nil {
		return "nogroup"
	}
	return u.Gid
}

// The control socket with real users. Reading is for whoever may open the
// socket (its group, --socket-group); changing (reload) for root and the
// members of --control-group, by the groups the connecting process has —
// primary or supplementary, as the kernel recorded them at connect, not
// as the user database has them; every change is logged with the uid.
func TestSocketAccess(t *testing.T) {
	const group, ctlGroup = "usbctl-e2e", "usbctl-e2e-ctl"
	const member, ctl, other = "usbctl-e2e-in", "usbctl-e2e-adm", "usbctl-e2e-out"
	addGroup(t, group)
	addGroup(t, ctlGroup)
	memberUID, _ := addUser(t, member, "nogroup", group)
	ctlUID, _ := addUser(t, ctl, "nogroup", group, ctlGroup)
	addUser(t, other, "nogroup")
	pub, cli := publicDir(t, 0)

	w := newWorld(t, "g1")
	w.writeConfig(oneGuest)
	sock := pub + "/usbctl.sock"
	w.startDaemonAt(sock, "--socket-group", group, "--control-group", ctlGroup)
	st, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o660 || st.Sys().(*syscall.Stat_t).Gid != groupID(t, group) {
		t.Fatalf("socket mode %v group %d, want 0660 and group %s", st.Mode().Perm(), st.Sys().(*syscall.Stat_t).Gid, group)
	}
	if out, code := asUser(t, cli, sock, as(member), "status"); code != 0 || !strings.Contains(out, "ready") {
		t.Fatalf("socket group member reading status: exit %d\n%s", code, out)
	}
	if out, code := asUser(t, cli, sock, as(member), "reload"); code == 0 || !strings.Contains(out, "reload needs root or a member of group "+ctlGroup) {
		t.Fatalf("socket group member reloading: exit %d, want a refusal naming %s\n%s", code, ctlGroup, out)
	}
	if out, code := asUser(t, cli, sock, as(other), "status"); code == 0 || !strings.Contains(out, "permission denied") {
		t.Fatalf("non-member reading status: exit %d, want permission denied\n%s", code, out)
	}
	for _, c := range []struct {
		what  string
		creds []string
		allow bool
	}{
		{"control group member, as a login gives its groups", as(ctl), true},
		{"control group member that dropped its supplementary groups", []string{"--reuid=" + ctl, "--regid=" + group, "--clear-groups"}, false},
		{"the control group as primary group", []string{"--reuid=" + member, "--regid=" + ctlGroup, "--groups=" + strconv.Itoa(int(groupID(t, group)))}, true},
		{"a non-member given the control group by its parent", []string{"--reuid=" + member, "--regid=nogroup", "--groups=" + fmt.Sprintf("%d,%d", groupID(t, group), groupID(t, ctlGroup))}, true},
	} {
		out, code := asUser(t, cli, sock, c.creds, "reload")
		if c.allow && (code != 0 || !strings.Contains(out, "config reloaded")) {
			t.Errorf("%s reloading: exit %d, want it allowed\n%s", c.what, code, out)
		}
		if !c.allow && (code == 0 || !strings.Contains(out, "reload needs root")) {
			t.Errorf("%s reloading: exit %d, want a refusal\n%s", c.what, code, out)
		}
	}
	log := w.d.LogText()
	for _, want := range []string{
		fmt.Sprintf(`msg="reload refused" component=api uid=%d `, memberUID),
		fmt.Sprintf(`msg="reload requested" component=api uid=%d `, ctlUID),
		fmt.Sprintf(`msg="reload refused" component=api uid=%d `, ctlUID),
		fmt.Sprintf(`msg="reload requested" component=api uid=%d `, memberUID),
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s", want)
		}
	}
}

// libvirtGroup is the group Debian's polkit rule and libvirtd.conf's
// comments name; libvirt-daemon-system creates it (scripts/deps.sh
// installs it).
const libvirtGroup = "libvirt"

// usbctld as the package runs it: a system user of its own with its own
// group (the socket's), a member of libvirt, no capability. Against
// libvirtd as Debian 12 ships it (socket open to all, polkit and Debian's
// 60-libvirt.rules deciding) and as libvirtd.conf's unix_sock_group
// would have it, it watches udev, lists, attaches and detaches, removes an
// orphan through the QEMU monitor, serves status to its group and reloads
// for --control-group, serves metrics on TCP; a user outside libvirt is
// refused by libvirt.
func TestUnprivilegedDaemon(t *testing.T) {
	if _, err := user.LookupGroup(libvirtGroup); err != nil {
		t.Fatalf("group %s: %v: install libvirt-daemon-system (make deps)", libvirtGroup, err)
	}
	const daemon, reader, admin, outsider = "usbctl-e2e-d", "usbctl-e2e-r", "usbctl-e2e-a", "usbctl-e2e-x"
	const ctlGroup = "usbctl-e2e-ctl"
	addGroup(t, ctlGroup)
	uid, gid := addUser(t, daemon, "", libvirtGroup)
	addUser(t, reader, "nogroup", daemon)
	adminUID, _ := addUser(t, admin, "nogroup", daemon, ctlGroup)
	outsiderUID, _ := addUser(t, outsider, "")
	// The metrics listener needs 127.0.0.1: bring up lo in the test's
	// network namespace (scripts/umockdev-exec gives it one).
	run(t, "ip", "link", "set", "lo", "up")

	for _, mode := range []struct {
		name      string
		auth      sandbox.Auth
		refusedBy string // what libvirt says to a user outside libvirt
	}{
		{"debian-polkit", sandbox.AuthPolkit, "org.libvirt.unix.manage"},
		{"socket-group", sandbox.AuthSocketGroup, "Permission denied"},
	} {
		t.Run(mode.name, func(t *testing.T) {
			w := newWorldWith(t, sandbox.Options{Auth: mode.auth, SocketGroup: libvirtGroup}, "g1")
			if err := w.sb.AllowUser(); err != nil {
				t.Fatal(err)
			}
			pub, cli := publicDir(t, uid)
			w.cfg = filepath.Join(pub, "usbctl.hcl")
			w.writeConfig(oneGuest)
			w.start("g1")
			sock := filepath.Join(pub, "usbctl.sock")
			w.startDaemonWith(sandbox.UsbctldOptions{User: daemon, Socket: sock,
				Args: []string{"--config", w.cfg, "--control-group", ctlGroup, "--metrics-listen", "127.0.0.1:0"}})

			// Its credentials: the user's, the groups a login gives it,
			// no capability.
			status := procStatus(t, w.d.Cmd.Process.Pid)
			want := fmt.Sprintf("%d\t%d\t%d\t%d", uid, uid, uid, uid)
			if status["Uid"] != want || !strings.HasPrefix(status["Gid"], strconv.Itoa(int(gid))+"\t") {
				t.Fatalf("usbctld runs as Uid %q Gid %q, want uid %d gid %d", status["Uid"], status["Gid"], uid, gid)
			}
			if !strings.Contains(" "+status["Groups"]+" ", fmt.Sprintf(" %d ", groupID(t, libvirtGroup))) {
				t.Fatalf("usbctld's groups %q lack %s", status["Groups"], libvirtGroup)
			}
			for _, c := range []string{"CapInh", "CapPrm", "CapEff", "CapAmb"} {
				if status[c] != "0000000000000000" {
					t.Fatalf("usbctld has capabilities: %s %s", c, status[c])
				}
			}
			// Its socket: its own, group its own group, 0660.
			st, err := os.Stat(sock)
			if err != nil {
				t.Fatal(err)
			}
			if sys := st.Sys().(*syscall.Stat_t); st.Mode().Perm() != 0o660 || sys.Uid != uid || sys.Gid != gid {
				t.Fatalf("socket %v %d:%d, want 0660 %d:%d", st.Mode().Perm(), sys.Uid, sys.Gid, uid, gid)
			}

			// udev and libvirt: plug, attach, unplug, detach.
			d := usb(2, "1-1", "046d", "c52b", "")
			w.plugTimed("g1", d)
			w.unplug(d)
			w.waitDetached("g1", alias(d))

			// An orphan only the QEMU monitor can remove: QEMU holds a
			// device under usbctl's alias that libvirt does not know
			// of (what a libvirtd restart in the middle of an attach
			// leaves). A reload by a control group member then makes
			// the device wanted.
			y := usb(3, "1-2", "1050", "0407", "")
			w.plug(y)
			if _, err := w.sb.Virsh("qemu-monitor-command", "g1", fmt.Sprintf(`{"execute":"device_add","arguments":{"driver":"usb-host","hostdevice":"/dev/bus/usb/001/003","id":"%s"}}`, alias(y))); err != nil {
				t.Fatal(err)
			}
			if w.has("g1", alias(y)) {
				t.Fatal("setup: libvirt knows the orphan")
			}
			w.writeConfig(`
domain "g1" {
  device "receiver" { ids = ["046d:c52b"] }
  device "key"      { ids = ["1050:0407"] }
}
`)
			if out, code := asUser(t, cli, sock, as(admin), "reload"); code != 0 || !strings.Contains(out, "config reloaded") {
				t.Fatalf("control group member reloading: exit %d\n%s", code, out)
			}
			w.converged("g1", alias(y))
			if log := w.d.LogText(); !strings.Contains(log, "lost track") || !strings.Contains(log, fmt.Sprintf(`msg="reload requested" component=api uid=%d `, adminUID)) {
				t.Fatalf("usbctld did not log the orphan's removal or the reload's uid:\n%s", log)
			}
			t.Logf("orphan %s removed through the QEMU monitor by uid %d and attached again", alias(y), uid)
			w.unplug(y)
			w.converged("g1")

			// The socket: status for its group, no change for it, nothing
			// for others.
			if out, code := asUser(t, cli, sock, as(reader), "status"); code != 0 || !strings.Contains(out, "ready") {
				t.Fatalf("socket group member reading status: exit %d\n%s", code, out)
			}
			if out, code := asUser(t, cli, sock, as(reader), "reload"); code == 0 || !strings.Contains(out, "reload needs root or a member of group "+ctlGroup) {
				t.Fatalf("socket group member reloading: exit %d, want refusal\n%s", code, out)
			}
			if out, code := asUser(t, cli, sock, as(outsider), "status"); code == 0 || !strings.Contains(out, "permission denied") {
				t.Fatalf("outsider reading status: exit %d, want permission denied\n%s", code, out)
			}

			// Metrics, on TCP and on the socket.
			m := regexp.MustCompile(`msg="serving metrics" addr=(\S+)`).FindStringSubmatch(w.d.LogText())
			if m == nil {
				t.Fatalf("no metrics listener in the log:\n%s", w.d.LogText())
			}
			resp, err := http.Get("http://" + m[1] + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(body), "\nusbctl_libvirt_connected 1\n") {
				t.Fatalf("metrics on %s lack usbctl_libvirt_connected 1:\n%.1500s", m[1], body)
			}
			if v := w.metric("usbctl_actions_total", map[string]string{"kind": "attach"}); v < 2 {
				t.Fatalf("usbctl_actions_total{kind=attach} = %v, want at least 2", v)
			}

			// The libvirt group is what let it in: the same daemon as a
			// user outside it is refused by libvirtd, and says so.
			xdir, _ := publicDir(t, outsiderUID)
			x, err := w.sb.StartUsbctld(sandbox.UsbctldOptions{Bin: bins.usbctld, User: outsider, NoDevices: true,
				Socket: filepath.Join(xdir, "usbctl.sock"), Log: filepath.Join(w.dir, "outsider.log"),
				// A lock directory of its own: on the same libvirt as
				// the first, it would be refused as a second daemon.
				Args: []string{"--config", noRules(t, xdir), "--runtime-dir", filepath.Join(xdir, "run")}})
			if err != nil {
				t.Fatal(err)
			}
			defer x.Stop(syscall.SIGTERM)
			var refusal string
			w.eventually("the outsider's usbctld reports libvirt's refusal", 20*time.Second, func() bool {
				st, err := x.Client().Status(context.Background())
				refusal = st.Hypervisor.LastError
				return err == nil && !st.Hypervisor.Connected && strings.Contains(refusal, mode.refusedBy)
			})
			t.Logf("usbctld as %s (not in %s): %s", outsider, libvirtGroup, refusal)

			if mode.auth != sandbox.AuthPolkit {
				return
			}
			// Without umockdev, on this machine's kernel: the real
			// netlink monitor and the real /sys, unprivileged.
			rdir, _ := publicDir(t, uid)
			r, err := w.sb.StartUsbctld(sandbox.UsbctldOptions{Bin: bins.usbctld, User: daemon, NoDevices: true,
				Socket: filepath.Join(rdir, "usbctl.sock"), Log: filepath.Join(w.dir, "real-udev.log"),
				Args: []string{"--config", noRules(t, rdir), "--runtime-dir", filepath.Join(rdir, "run")}})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Stop(syscall.SIGTERM)
			if err := r.WaitReady(context.Background(), 30*time.Second); err != nil {
				t.Fatal(err)
			}
			if log := r.LogText(); strings.Contains(log, "udev monitor broke") || strings.Contains(log, "level=ERROR") {
				t.Fatalf("usbctld on the real udev, unprivileged:\n%s", log)
			}
		})
	}
}

// noRules writes a config without rules into dir, for a second usbctld
// that must not act on the guests.
func noRules(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "none.hcl")
	if err := os.WriteFile(p, []byte("# no rules: this usbctld only watches\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// procStatus is /proc/PID/status as a map of its fields.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}
