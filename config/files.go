package config

import (
	"fmt"
	"path/filepath"
	"strings"
)

// DescribeFiles names the files of a config for one line of a log, of
// usbctl check or of usbctl status: each path when there are few; else by
// directory, a directory of many as its count and its first and last file
// (300 files in conf.d were 300 paths on one line).
func DescribeFiles(files []string) string {
	if len(files) == 0 {
		return "(no files)"
	}
	if len(files) <= 4 {
		return strings.Join(files, ", ")
	}
	type group struct {
		dir   string
		names []string
	}
	var groups []*group
	byDir := map[string]*group{}
	for _, f := range files {
		dir, name := filepath.Split(f)
		g := byDir[dir]
		if g == nil {
			g = &group{dir: dir}
			byDir[dir] = g
			groups = append(groups, g)
		}
		g.names = append(g.names, name)
	}
	parts := make([]string, 0, len(groups))
	for _, g := range groups {
		if len(g.names) <= 2 {
			for _, n := range g.names {
				parts = append(parts, g.dir+n)
			}
			continue
		}
		parts = append(parts, fmt.Sprintf("%d files in %s (%s … %s)", len(g.names), filepath.Clean(g.dir), g.names[0], g.names[len(g.names)-1]))
	}
	return strings.Join(parts, ", ")
}
