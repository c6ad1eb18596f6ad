// Package deptest fails a test when a package's dependency graph, or the
// binary it links, holds what it must not, in the spirit of Tailscale's
// tstest/deptest. It guards the layering (reconcile and config build
// without cgo, libvirt or libudev) and the libraries left out on purpose,
// each refusal stating the measured reason, so that nobody adds one back
// without knowing why it went.
package deptest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// Checker describes what one package may not depend on.
type Checker struct {
	// Pkg is the package, as go list takes it ("." for the test's own).
	Pkg string
	// BadDeps maps an import path to why Pkg must not depend on it; a
	// path ending in "/..." covers everything below it too.
	BadDeps map[string]string
	// NoCgo, when set, is why no package of the graph outside the
	// standard library may use cgo, and the graph must build with
	// CGO_ENABLED=0.
	NoCgo string
	// BadSymbols maps a symbol to why Pkg's binary must not link it: for
	// a part of a package the rest of which is used. Setting it builds
	// Pkg (a main package).
	BadSymbols map[string]string
}

type listed struct {
	ImportPath string
	Standard   bool
	CgoFiles   []string
	Error      *struct{ Err string }
}

// Check runs the checks and reports each violation with its reason.
func (c Checker) Check(t testing.TB) {
	t.Helper()
	pkgs, err := list(c.Pkg, "1")
	if err != nil {
		t.Fatal(err)
	}
	// go list -deps prints the package itself last.
	name := pkgs[len(pkgs)-1].ImportPath
	for _, p := range pkgs {
		if p.Error != nil {
			t.Errorf("go list %s: %s: %s", c.Pkg, p.ImportPath, p.Error.Err)
		}
		for bad, why := range c.BadDeps {
			if p.ImportPath == name {
				break // a package is not its own dependency
			}
			if p.ImportPath == bad || strings.HasSuffix(bad, "/...") && strings.HasPrefix(p.ImportPath+"/", strings.TrimSuffix(bad, "...")) {
				t.Errorf("%s depends on %s (%s), which it must not: %s", name, p.ImportPath, chain(c.Pkg, p.ImportPath), why)
			}
		}
		if c.NoCgo != "" && !p.Standard && len(p.CgoFiles) > 0 {
			t.Errorf("%s depends on %s, which uses cgo (%s): %s", name, p.ImportPath, strings.Join(p.CgoFiles, ", "), c.NoCgo)
		}
	}
	if c.NoCgo != "" {
		nocgo, err := list(c.Pkg, "0")
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range nocgo {
			if p.Error != nil {
				t.Errorf("%s does not build with CGO_ENABLED=0 (%s: %s): %s", name, p.ImportPath, p.Error.Err, c.NoCgo)
			}
		}
	}
	if len(c.BadSymbols) > 0 {
		c.checkSymbols(t, name)
	}
}

func (c Checker) checkSymbols(t testing.TB, name string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "bin")
	if out, err := goCmd("1", "build", "-o", bin, c.Pkg).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", c.Pkg, err, out)
	}
	out, err := goCmd("1", "tool", "nm", bin).Output()
	if err != nil {
		t.Fatalf("go tool nm: %v", err)
	}
	have := map[string]bool{}
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) >= 3 {
			have[f[len(f)-1]] = true
		}
	}
	if len(have) == 0 {
		t.Fatalf("go tool nm %s listed no symbols", c.Pkg)
	}
	for sym, why := range c.BadSymbols {
		if have[sym] {
			t.Errorf("%s links %s, which it must not: %s", name, sym, why)
		}
	}
}

// list runs go list -deps on pkg with CGO_ENABLED=cgo.
func list(pkg, cgo string) ([]listed, error) {
	cmd := goCmd(cgo, "list", "-e", "-deps", "-json=ImportPath,Standard,CgoFiles,Error", pkg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list %s: %v\n%s", pkg, err, stderr.String())
	}
	var pkgs []listed
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listed
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("go list %s: %w", pkg, err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		return nil, fmt.Errorf("go list %s: no packages", pkg)
	}
	return pkgs, nil
}

// chain says how pkg reaches dep, for the message: the shortest path of
// imports.
func chain(pkg, dep string) string {
	out, err := goCmd("1", "list", "-deps", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, pkg).Output()
	if err != nil {
		return "path unknown"
	}
	imports := map[string][]string{}
	var root string
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		imports[f[0]] = f[1:]
		root = f[0] // go list -deps prints the package itself last
	}
	prev := map[string]string{root: ""}
	queue := []string{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if p == dep {
			var path []string
			for ; p != ""; p = prev[p] {
				path = append(path, p)
			}
			slices.Reverse(path)
			return strings.Join(path, " → ")
		}
		for _, q := range imports[p] {
			if _, seen := prev[q]; !seen {
				prev[q] = p
				queue = append(queue, q)
			}
		}
	}
	return "path unknown"
}

// goCmd runs the go command that runs the test (go test puts its GOROOT's
// bin first only sometimes: take PATH's, else the toolchain's own).
func goCmd(cgo string, args ...string) *exec.Cmd {
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(gobin, args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED="+cgo)
	return cmd
}
