package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/usbctl/usbctl/config"
	"github.com/usbctl/usbctl/controller/api"
	"github.com/usbctl/usbctl/internal/atomicfile"
	"github.com/usbctl/usbctl/reconcile"
)

// confFiles is how config files change from the command line (usbctl rule
// add/remove, attach --save). The CLI renders the new file with hclwrite,
// which usbctld must not link (it brings go-cmp: ~0.5 MB of resident heap);
// usbctld, which already links the config parser and runs with the least
// privilege that can write (under its hardened unit only conf.d is
// writable), checks the result and writes it:
//
//   - only files directly under its conf.d directory, named by usbctld
//     (DOMAIN.hcl, excludes.hcl) or already holding the domain: a peer never
//     picks a path;
//   - only domain and exclude blocks: the libvirt URI, which decides what
//     usbctld connects to, stays in the hands of whoever can edit the
//     main file;
//   - only if the file still has the content the CLI edited (its hash):
//     two editors never overwrite each other;
//   - only if the whole config, with the new file, is valid: the checker
//     runs before the file is replaced, atomically, and then reloaded.
type confFiles struct {
	dir   string   // the conf.d directory among the config paths; "" for none
	paths []string // every config path, for the check
	log   *slog.Logger
	mu    sync.Mutex // one write at a time
}

// confDir finds the conf.d directory among the config paths: the last
// directory (usbctld's default is /etc/usbctl/conf.d).
func confDir(paths []string) string {
	dir := ""
	for _, p := range paths {
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			dir = filepath.Clean(p)
		}
	}
	return dir
}

var fileNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,120}\.hcl$`)

// fileName is the conf.d file for a domain: its name, with what does not
// belong in a file name replaced.
func fileName(domain string) string {
	if domain == "" {
		return "excludes.hcl"
	}
	b := []byte(domain)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	if b[0] == '.' {
		b[0] = '_'
	}
	if len(b) > 100 {
		b = b[:100]
	}
	return string(b) + ".hcl"
}

// sourceFile is the file of a "file:line" source.
func sourceFile(src string) string {
	if i := strings.LastIndexByte(src, ':'); i > 0 {
		return src[:i]
	}
	return src
}

func (c *confFiles) needDir() error {
	if c.dir == "" {
		return fmt.Errorf("usbctld reads no conf.d directory (its --config paths are %s), and it writes rules only there: create %s and restart usbctld, or add the block by hand: %w",
			strings.Join(c.paths, ", "), config.DefaultDir, api.ErrBadRequest)
	}
	return nil
}

// fileFor returns the file that holds, or will hold, the domain's rules
// (domain "": the excludes usbctl writes).
func (c *confFiles) fileFor(domain string, rules reconcile.Rules) (api.ConfigFile, error) {
	if err := c.needDir(); err != nil {
		return api.ConfigFile{}, err
	}
	path := filepath.Join(c.dir, fileName(domain))
	for _, dr := range rules.Domains {
		if dr.Name != domain || dr.Source == "" {
			continue
		}
		f := filepath.Clean(sourceFile(dr.Source))
		if filepath.Dir(f) != c.dir {
			return api.ConfigFile{}, fmt.Errorf("domain %q is defined in %s, outside %s, and usbctld writes only there: move its block to %s (usbctl then edits it there), or edit %s by hand: %w",
				domain, f, c.dir, path, f, api.ErrBadRequest)
		}
		path = f
	}
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return api.ConfigFile{}, fmt.Errorf("read %s: %w", path, err)
	}
	return api.ConfigFile{Name: filepath.Base(path), Path: path, Exists: err == nil, Content: b, SHA256: hash(b)}, nil
}

func hash(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// write checks and writes a file; reload is called after a write.
func (c *confFiles) write(w api.ConfigWrite, uid uint32, reload func() api.ReloadResult) (api.ConfigWritten, error) {
	if err := c.needDir(); err != nil {
		return api.ConfigWritten{}, err
	}
	if !fileNameRE.MatchString(w.Name) {
		return api.ConfigWritten{}, fmt.Errorf("file name %q: usbctld writes only NAME.hcl files directly under %s: %w", w.Name, c.dir, api.ErrBadRequest)
	}
	path := filepath.Join(c.dir, w.Name)
	types, diags := config.BlockTypes(w.Content, path)
	if diags.HasErrors() {
		return api.ConfigWritten{Path: path, Diagnostics: config.Diagnostics{Diagnostics: diags}.Strings()}, nil
	}
	for _, t := range types {
		if t != "domain" && t != "exclude" {
			return api.ConfigWritten{}, fmt.Errorf("%s: a file written through usbctld holds only domain and exclude blocks, not %s (the libvirt block stays in the main config, edited by root): %w", path, t, api.ErrBadRequest)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cur, err := os.ReadFile(path)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return api.ConfigWritten{}, fmt.Errorf("read %s: %w", path, err)
	}
	switch {
	case w.BaseSHA256 == "" && exists:
		return api.ConfigWritten{}, fmt.Errorf("%s was created since it was read; run the command again: %w", path, api.ErrConflict)
	case w.BaseSHA256 != "" && (!exists || hash(cur) != w.BaseSHA256):
		return api.ConfigWritten{}, fmt.Errorf("%s changed since it was read; run the command again: %w", path, api.ErrConflict)
	}
	cfg, cdiags := config.LoadReplacing(config.Source{Name: path, Data: w.Content}, c.paths...)
	res := api.ConfigWritten{Path: path, Diagnostics: cdiags.Strings()}
	if cfg == nil {
		c.log.Warn("config write refused: invalid", "file", path, "uid", uid, "why", w.Why)
		return res, nil
	}
	if err := atomicfile.Write(path, w.Content, 0o644); err != nil {
		return api.ConfigWritten{}, err
	}
	res.Written = true
	c.log.Info("config file written", "file", path, "uid", uid, "why", w.Why, "bytes", len(w.Content))
	res.Reload = reload()
	return res, nil
}
