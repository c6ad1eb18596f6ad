package exposition

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// The process_* families here and the go_* ones of goruntime.go are the ones client_golang's
// ProcessCollector and GoCollector (v1.25, default options) exported, with
// the same names, help texts, types and sources, so dashboards and alerts
// built on them keep working without the library.

// userHZ is the kernel's USER_HZ, the unit of the times in /proc/<pid>/stat:
// 100 on every Linux architecture in use (procfs assumes the same).
const userHZ = 100

// Process reads the process metrics from /proc/self and the resource
// limits. Like client_golang's process collector, a value that cannot be
// read is left out instead of failing the whole scrape: they are nice to
// have, the caller's own metrics are what matters.
func Process() []Family {
	var fams []Family
	if st, err := readSelfStat(); err == nil {
		fams = append(fams,
			Counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", float64(st.utime+st.stime)/userHZ),
			Gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", float64(st.vsize)),
			Gauge("process_resident_memory_bytes", "Resident memory size in bytes.", float64(st.rss)*float64(os.Getpagesize())),
		)
		if boot, err := readBootTime(); err == nil {
			fams = append(fams, Gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", float64(boot)+float64(st.starttime)/userHZ))
		}
	}
	if n, err := countOpenFDs(); err == nil {
		fams = append(fams, Gauge("process_open_fds", "Number of open file descriptors.", float64(n)))
	}
	// The soft limits are the ones that apply (/proc/self/limits shows the
	// same values). RLIM_INFINITY comes out as 2^64-1, as it did before.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
		fams = append(fams, Gauge("process_max_fds", "Maximum number of open file descriptors.", float64(lim.Cur)))
	}
	if err := syscall.Getrlimit(syscall.RLIMIT_AS, &lim); err == nil {
		fams = append(fams, Gauge("process_virtual_memory_max_bytes", "Maximum amount of virtual memory available in bytes.", float64(lim.Cur)))
	}
	if in, out, err := readNetOctets(); err == nil {
		fams = append(fams,
			Counter("process_network_receive_bytes_total", "Number of bytes received by the process over the network.", in),
			Counter("process_network_transmit_bytes_total", "Number of bytes sent by the process over the network.", out),
		)
	}
	return fams
}

// selfStat holds the fields of /proc/self/stat the metrics need: times in
// clock ticks, vsize in bytes, rss in pages.
type selfStat struct {
	utime, stime, starttime, vsize, rss uint64
}

func readSelfStat() (selfStat, error) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return selfStat{}, err
	}
	return parseStat(string(b))
}

// parseStat parses a /proc/<pid>/stat line (proc_pid_stat(5)). The command
// name in parentheses may hold spaces and parentheses itself, so the fields
// are counted from the last ')'.
func parseStat(s string) (selfStat, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return selfStat{}, errors.New("stat: no command name")
	}
	// f[0] is field 3 (state): field n is f[n-3].
	f := strings.Fields(s[i+1:])
	if len(f) < 22 {
		return selfStat{}, fmt.Errorf("stat: %d fields after the command name, want at least 22", len(f))
	}
	var st selfStat
	for _, p := range []struct {
		field int
		dst   *uint64
	}{{14, &st.utime}, {15, &st.stime}, {22, &st.starttime}, {23, &st.vsize}, {24, &st.rss}} {
		v, err := strconv.ParseUint(f[p.field-3], 10, 64)
		if err != nil {
			return selfStat{}, fmt.Errorf("stat field %d: %w", p.field, err)
		}
		*p.dst = v
	}
	return st, nil
}

// readBootTime returns the boot time in seconds since the epoch, the
// "btime" line of /proc/stat, which process start times count from.
func readBootTime() (uint64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, errors.New("/proc/stat: no btime")
}

// countOpenFDs counts the entries of /proc/self/fd. The directory's own
// descriptor is among them, as it was with client_golang.
func countOpenFDs() (int, error) {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	return len(names), err
}

func readNetOctets() (in, out float64, err error) {
	b, err := os.ReadFile("/proc/self/net/netstat")
	if err != nil {
		return 0, 0, err
	}
	return parseNetOctets(string(b))
}

// parseNetOctets returns InOctets and OutOctets of the IpExt section of
// /proc/<pid>/net/netstat: pairs of lines, one with the field names and
// one with the values. Those count the process's network namespace, which
// is what client_golang reported under the process_network_* names. A
// missing field counts as 0, as it did there.
func parseNetOctets(s string) (in, out float64, err error) {
	var prev []string
	for line := range strings.Lines(s) {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "IpExt:" {
			prev = nil
			continue
		}
		if prev == nil {
			prev = f
			continue
		}
		if len(prev) != len(f) {
			return 0, 0, errors.New("netstat: IpExt names and values differ in number")
		}
		for i := 1; i < len(f); i++ {
			var dst *float64
			switch prev[i] {
			case "InOctets":
				dst = &in
			case "OutOctets":
				dst = &out
			default:
				continue
			}
			if *dst, err = strconv.ParseFloat(f[i], 64); err != nil {
				return 0, 0, fmt.Errorf("netstat %s: %w", prev[i], err)
			}
		}
		return in, out, nil
	}
	return 0, 0, nil
}
