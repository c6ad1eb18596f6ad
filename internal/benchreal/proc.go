package main

// What the CPUs of the test host did: usbctld's threads (schedstat) and
// the whole machine (/proc/stat), to say what dominates a missed target.

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

type sched struct{ run, wait time.Duration }

// schedstat sums /proc/PID/task/*/schedstat: time on CPU and time
// runnable but waiting for one.
func schedstat(pid int) (sched, error) {
	var s sched
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		return s, fmt.Errorf("schedstat of %d: no tasks (%v)", pid, err)
	}
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // a thread that just ended
		}
		f := strings.Fields(string(b))
		if len(f) < 2 {
			return s, fmt.Errorf("%s: %q", t, b)
		}
		r, _ := strconv.ParseInt(f[0], 10, 64)
		w, _ := strconv.ParseInt(f[1], 10, 64)
		s.run += time.Duration(r)
		s.wait += time.Duration(w)
	}
	return s, nil
}

type cpuTimes struct {
	busy, total int64
	cpus        int
}

// readCPU reads the "cpu" line of /proc/stat (idle and iowait are idle).
func readCPU() (cpuTimes, error) {
	var c cpuTimes
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return c, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		if f[0] != "cpu" {
			c.cpus++
			continue
		}
		for i, v := range f[1:] {
			n, _ := strconv.ParseInt(v, 10, 64)
			c.total += n
			if i != 3 && i != 4 { // idle, iowait
				c.busy += n
			}
		}
	}
	return c, nil
}

func (c cpuTimes) busyShare(since cpuTimes) float64 {
	if c.total == since.total {
		return 0
	}
	return float64(c.busy-since.busy) / float64(c.total-since.total)
}
