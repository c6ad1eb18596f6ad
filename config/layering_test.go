package config

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLayering keeps the decision code pure: reconcile and config must build
// without cgo and must not pull in libvirt or udev, directly or indirectly
// (in the spirit of Tailscale's tstest/deptest).
func TestLayering(t *testing.T) {
	for _, pkg := range []string{"github.com/usbctl/usbctl/reconcile", "github.com/usbctl/usbctl/config"} {
		cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{if .CgoFiles}}cgo{{end}}", pkg)
		cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s without cgo: %v\n%s", pkg, err, out)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			dep, cgo, _ := strings.Cut(line, " ")
			switch {
			case dep == "C", cgo == "cgo":
				t.Errorf("%s depends on cgo through %s", pkg, dep)
			case strings.HasPrefix(dep, "libvirt.org/"), strings.Contains(dep, "go-udev"),
				strings.HasPrefix(dep, "github.com/usbctl/usbctl/controller"), strings.HasPrefix(dep, "github.com/usbctl/usbctl/udevsrc"):
				t.Errorf("%s must not depend on %s", pkg, dep)
			}
		}
	}
}
