package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// A file is read as final only once it has been left alone for settle: a
// writer that truncates and then writes (shell redirection, many config
// management tools) leaves a moment in which the file is empty or half
// written, and an empty file is a valid config that detaches everything.
// A file still changing after maxWait is refused, so a reload keeps the
// rules in force instead of applying a torn file. Files untouched for
// settle (nearly always all of them) are read at once.
const (
	settle  = 100 * time.Millisecond
	maxWait = 2 * time.Second
)

// Load reads each path — a file, or a directory whose *.hcl files are read
// in lexical order — and merges them into one config. cfg is nil if and
// only if diags has errors. In a directory, hidden files (editor locks
// such as .#vm.hcl, swap files) and backup files are skipped as systemd
// skips them in its drop-in directories, and a *.hcl symlink whose target
// is missing is skipped with a warning that names it.
func Load(paths ...string) (*Config, Diagnostics) {
	return loader{settle: settle, maxWait: maxWait, now: time.Now, sleep: time.Sleep}.load(paths)
}

// LoadReplacing is Load with the file named by r.Name (which need not
// exist yet: it then joins its directory in order) read as r.Data: what
// the config would be if that file were written so. usbctld checks a file
// the CLI rendered with it before it writes the file.
func LoadReplacing(r Source, paths ...string) (*Config, Diagnostics) {
	return loader{settle: settle, maxWait: maxWait, now: time.Now, sleep: time.Sleep, replace: &r}.load(paths)
}

type loader struct {
	settle, maxWait time.Duration
	now             func() time.Time
	sleep           func(time.Duration)
	// replace, if set, is read instead of the file of its name.
	replace *Source
}

func (l loader) load(paths []string) (*Config, Diagnostics) {
	// One deadline for the whole load: a reload waits at most maxWait
	// however many files are being written.
	deadline := l.now().Add(l.maxWait)
	var srcs []Source
	var diags hcl.Diagnostics
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError,
				Summary: "Cannot read config",
				Detail:  fmt.Sprintf("%v. Create it (see the examples directory) or point --config at an existing file or directory.", err)})
			continue
		}
		files := []string{p}
		if st.IsDir() {
			var d hcl.Diagnostics
			files, d = dirFiles(p)
			diags = append(diags, d...)
			if r := l.replace; r != nil && filepath.Dir(r.Name) == filepath.Clean(p) && !slices.Contains(files, r.Name) {
				files = append(files, r.Name)
				slices.Sort(files)
			}
		}
		for _, f := range files {
			if r := l.replace; r != nil && f == r.Name {
				srcs = append(srcs, *r)
				continue
			}
			b, err := l.readStable(f, deadline)
			if err != nil {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Cannot read config",
					Detail: fmt.Sprintf("%v.", err)})
				continue
			}
			srcs = append(srcs, Source{Name: f, Data: b})
		}
	}
	cfg, d := Parse(srcs...)
	d.Diagnostics = append(diags, d.Diagnostics...)
	if d.HasErrors() {
		cfg = nil
	}
	return cfg, d
}

// dirFiles lists the config files of a directory in lexical order.
func dirFiles(dir string) ([]string, hcl.Diagnostics) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot read config directory",
			Detail: fmt.Sprintf("%v.", err)}}
	}
	var files []string
	var diags hcl.Diagnostics
	for _, e := range ents {
		name := e.Name()
		if hiddenOrBackup(name) || !strings.HasSuffix(name, ".hcl") {
			continue
		}
		path := filepath.Join(dir, name)
		st, err := os.Stat(path)
		switch {
		case err != nil && errors.Is(err, fs.ErrNotExist) && e.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(path)
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: "Dangling symlink skipped: " + path,
				Detail: fmt.Sprintf("%s is a symlink to %s, which does not exist, so it is not read. Restore its target, or remove the link.", path, target)})
		case err != nil:
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Cannot read config",
				Detail: fmt.Sprintf("%v.", err)})
		case st.IsDir():
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: "Directory skipped: " + path,
				Detail: fmt.Sprintf("%s is a directory, not a config file, so it is not read; config directories are not searched recursively.", path)})
		default:
			files = append(files, path)
		}
	}
	return files, diags
}

// hiddenOrBackup is systemd's rule for files its drop-in directories
// ignore (hidden_or_backup_file in src/basic/path-util.c): hidden files,
// which covers editor locks (.#vm.hcl) and swap files (.vm.hcl.swp),
// names ending in "~" and package managers' leftovers. nginx's include
// of "*.conf" skips hidden files the same way, through glob(3).
func hiddenOrBackup(name string) bool {
	if strings.HasPrefix(name, ".") || strings.HasSuffix(name, "~") {
		return true
	}
	i := strings.LastIndexByte(name, '.')
	if i < 0 {
		return false
	}
	switch name[i+1:] {
	case "rpmnew", "rpmsave", "rpmorig", "dpkg-old", "dpkg-new", "dpkg-tmp", "dpkg-dist", "dpkg-bak",
		"dpkg-backup", "dpkg-remove", "ucf-new", "ucf-old", "ucf-dist", "swp", "bak", "old", "new":
		return true
	}
	return false
}

// readStable reads a file that may be being rewritten: it returns the
// content only once the file has been unchanged for l.settle, and an error
// if it is still changing at deadline.
func (l loader) readStable(path string, deadline time.Time) ([]byte, error) {
	for {
		before, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		after, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		if same(before, after) && int64(len(data)) == after.Size() {
			age := l.now().Sub(after.ModTime())
			if age >= l.settle {
				return data, nil
			}
			// Changed a moment ago (or dated in the future): wait until
			// it has been quiet for settle, then take it if it still is.
			wait := l.settle - age
			if age < 0 || wait > l.settle {
				wait = l.settle
			}
			l.sleep(wait)
			if now, err := os.Stat(path); err == nil && same(after, now) {
				return data, nil
			}
		} else {
			l.sleep(l.settle / 10)
		}
		if !l.now().Before(deadline) {
			return nil, fmt.Errorf("%s kept changing while it was read, for %v, so it is not used (a reload keeps the rules in force). Reload once whatever writes it is done", path, l.maxWait)
		}
	}
}

// same reports whether two stats of a path are of the same, unmodified
// file.
func same(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}
