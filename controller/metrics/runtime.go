package metrics

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The process_* and go_* families below are the ones client_golang's
// ProcessCollector and GoCollector (v1.25, default options) exported, with
// the same names, help texts, types and sources, so dashboards and alerts
// built on them keep working without the library.

// userHZ is the kernel's USER_HZ, the unit of the times in /proc/<pid>/stat:
// 100 on every Linux architecture in use (procfs assumes the same).
const userHZ = 100

// procFamilies reads the process metrics from /proc/self and the resource
// limits. Like client_golang's process collector, a value that cannot be
// read is left out instead of failing the whole scrape: they are nice to
// have, the usbctl metrics are what matters.
func procFamilies() []family {
	var fams []family
	if st, err := readSelfStat(); err == nil {
		fams = append(fams,
			counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", float64(st.utime+st.stime)/userHZ),
			gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", float64(st.vsize)),
			gauge("process_resident_memory_bytes", "Resident memory size in bytes.", float64(st.rss)*float64(os.Getpagesize())),
		)
		if boot, err := readBootTime(); err == nil {
			fams = append(fams, gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", float64(boot)+float64(st.starttime)/userHZ))
		}
	}
	if n, err := countOpenFDs(); err == nil {
		fams = append(fams, gauge("process_open_fds", "Number of open file descriptors.", float64(n)))
	}
	// The soft limits are the ones that apply (/proc/self/limits shows the
	// same values). RLIM_INFINITY comes out as 2^64-1, as it did before.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
		fams = append(fams, gauge("process_max_fds", "Maximum number of open file descriptors.", float64(lim.Cur)))
	}
	if err := syscall.Getrlimit(syscall.RLIMIT_AS, &lim); err == nil {
		fams = append(fams, gauge("process_virtual_memory_max_bytes", "Maximum amount of virtual memory available in bytes.", float64(lim.Cur)))
	}
	if in, out, err := readNetOctets(); err == nil {
		fams = append(fams,
			counter("process_network_receive_bytes_total", "Number of bytes received by the process over the network.", in),
			counter("process_network_transmit_bytes_total", "Number of bytes sent by the process over the network.", out),
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

// The runtime/metrics the go_* families derive from, in this order.
const (
	rmTinyAllocs = iota
	rmAllocsObjects
	rmFreesObjects
	rmAllocsBytes
	rmHeapObjects
	rmHeapGoal
	rmTotal
	rmHeapObjectsBytes
	rmHeapUnused
	rmHeapReleased
	rmHeapFree
	rmHeapStacks
	rmOSStacks
	rmMSpanInuse
	rmMSpanFree
	rmMCacheInuse
	rmMCacheFree
	rmBuckets
	rmMetadataOther
	rmOther
	rmGOGC
	rmGOMEMLIMIT
	rmGOMAXPROCS
	rmCount
)

var rmNames = [rmCount]string{
	rmTinyAllocs:       "/gc/heap/tiny/allocs:objects",
	rmAllocsObjects:    "/gc/heap/allocs:objects",
	rmFreesObjects:     "/gc/heap/frees:objects",
	rmAllocsBytes:      "/gc/heap/allocs:bytes",
	rmHeapObjects:      "/gc/heap/objects:objects",
	rmHeapGoal:         "/gc/heap/goal:bytes",
	rmTotal:            "/memory/classes/total:bytes",
	rmHeapObjectsBytes: "/memory/classes/heap/objects:bytes",
	rmHeapUnused:       "/memory/classes/heap/unused:bytes",
	rmHeapReleased:     "/memory/classes/heap/released:bytes",
	rmHeapFree:         "/memory/classes/heap/free:bytes",
	rmHeapStacks:       "/memory/classes/heap/stacks:bytes",
	rmOSStacks:         "/memory/classes/os-stacks:bytes",
	rmMSpanInuse:       "/memory/classes/metadata/mspan/inuse:bytes",
	rmMSpanFree:        "/memory/classes/metadata/mspan/free:bytes",
	rmMCacheInuse:      "/memory/classes/metadata/mcache/inuse:bytes",
	rmMCacheFree:       "/memory/classes/metadata/mcache/free:bytes",
	rmBuckets:          "/memory/classes/profiling/buckets:bytes",
	rmMetadataOther:    "/memory/classes/metadata/other:bytes",
	rmOther:            "/memory/classes/other:bytes",
	rmGOGC:             "/gc/gogc:percent",
	rmGOMEMLIMIT:       "/gc/gomemlimit:bytes",
	rmGOMAXPROCS:       "/sched/gomaxprocs:threads",
}

// goFamilies reads the Go runtime's metrics. The go_memstats_* values come
// from runtime/metrics, computed as client_golang does, because
// runtime.ReadMemStats stops the world.
func goFamilies() []family {
	samples := make([]rtmetrics.Sample, rmCount)
	for i := range samples {
		samples[i].Name = rmNames[i]
	}
	rtmetrics.Read(samples)
	// A metric this Go version lacks reads as KindBad: count it as 0, as
	// client_golang does.
	u := func(i int) float64 {
		if samples[i].Value.Kind() != rtmetrics.KindUint64 {
			return 0
		}
		return float64(samples[i].Value.Uint64())
	}
	// Tiny allocations are counted in both mallocs and frees, as MemStats
	// does, so that mallocs - frees stays the live object count.
	tiny := u(rmTinyAllocs)
	heapAlloc := u(rmHeapObjectsBytes)
	heapInuse := heapAlloc + u(rmHeapUnused)
	heapIdle := u(rmHeapReleased) + u(rmHeapFree)

	// ReadGCStats takes the heap lock, not the world; PauseQuantiles of
	// length 5 gives the minimum, the quartiles and the maximum.
	gc := debug.GCStats{PauseQuantiles: make([]time.Duration, 5)}
	debug.ReadGCStats(&gc)
	var qs []quantile
	for i, d := range gc.PauseQuantiles {
		qs = append(qs, quantile{float64(i) / 4, d.Seconds()})
	}

	// ThreadCreateProfile's count is the number of threads the runtime has
	// (it walks the list of Ms, without stopping the world): the source
	// client_golang used for go_threads.
	threads, _ := runtime.ThreadCreateProfile(nil)

	fams := []family{
		{name: "go_gc_duration_seconds", help: "A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles.", typ: typeSummary,
			series: []series{{summ: &summarySnapshot{quantiles: qs, count: uint64(gc.NumGC), sum: gc.PauseTotal.Seconds()}}}},
		gauge("go_goroutines", "Number of goroutines that currently exist.", float64(runtime.NumGoroutine())),
		gauge("go_threads", "Number of OS threads created.", float64(threads)),
		{name: "go_info", help: "Information about the Go environment.", typ: typeGauge,
			series: []series{{labels: []label{{"version", runtime.Version()}}, value: 1}}},
		gauge("go_memstats_last_gc_time_seconds", "Number of seconds since 1970 of last garbage collection.", float64(gc.LastGC.UnixNano())/1e9),

		gauge("go_memstats_alloc_bytes", "Number of bytes allocated in heap and currently in use. Equals to /memory/classes/heap/objects:bytes.", heapAlloc),
		counter("go_memstats_alloc_bytes_total", "Total number of bytes allocated in heap until now, even if released already. Equals to /gc/heap/allocs:bytes.", u(rmAllocsBytes)),
		gauge("go_memstats_sys_bytes", "Number of bytes obtained from system. Equals to /memory/classes/total:byte.", u(rmTotal)),
		counter("go_memstats_mallocs_total", "Total number of heap objects allocated, both live and gc-ed. Semantically a counter version for go_memstats_heap_objects gauge. Equals to /gc/heap/allocs:objects + /gc/heap/tiny/allocs:objects.", u(rmAllocsObjects)+tiny),
		counter("go_memstats_frees_total", "Total number of heap objects frees. Equals to /gc/heap/frees:objects + /gc/heap/tiny/allocs:objects.", u(rmFreesObjects)+tiny),
		gauge("go_memstats_heap_alloc_bytes", "Number of heap bytes allocated and currently in use, same as go_memstats_alloc_bytes. Equals to /memory/classes/heap/objects:bytes.", heapAlloc),
		gauge("go_memstats_heap_sys_bytes", "Number of heap bytes obtained from system. Equals to /memory/classes/heap/objects:bytes + /memory/classes/heap/unused:bytes + /memory/classes/heap/released:bytes + /memory/classes/heap/free:bytes.", heapInuse+heapIdle),
		gauge("go_memstats_heap_idle_bytes", "Number of heap bytes waiting to be used. Equals to /memory/classes/heap/released:bytes + /memory/classes/heap/free:bytes.", heapIdle),
		gauge("go_memstats_heap_inuse_bytes", "Number of heap bytes that are in use. Equals to /memory/classes/heap/objects:bytes + /memory/classes/heap/unused:bytes", heapInuse),
		gauge("go_memstats_heap_released_bytes", "Number of heap bytes released to OS. Equals to /memory/classes/heap/released:bytes.", u(rmHeapReleased)),
		gauge("go_memstats_heap_objects", "Number of currently allocated objects. Equals to /gc/heap/objects:objects.", u(rmHeapObjects)),
		gauge("go_memstats_stack_inuse_bytes", "Number of bytes obtained from system for stack allocator in non-CGO environments. Equals to /memory/classes/heap/stacks:bytes.", u(rmHeapStacks)),
		gauge("go_memstats_stack_sys_bytes", "Number of bytes obtained from system for stack allocator. Equals to /memory/classes/heap/stacks:bytes + /memory/classes/os-stacks:bytes.", u(rmHeapStacks)+u(rmOSStacks)),
		gauge("go_memstats_mspan_inuse_bytes", "Number of bytes in use by mspan structures. Equals to /memory/classes/metadata/mspan/inuse:bytes.", u(rmMSpanInuse)),
		gauge("go_memstats_mspan_sys_bytes", "Number of bytes used for mspan structures obtained from system. Equals to /memory/classes/metadata/mspan/inuse:bytes + /memory/classes/metadata/mspan/free:bytes.", u(rmMSpanInuse)+u(rmMSpanFree)),
		gauge("go_memstats_mcache_inuse_bytes", "Number of bytes in use by mcache structures. Equals to /memory/classes/metadata/mcache/inuse:bytes.", u(rmMCacheInuse)),
		gauge("go_memstats_mcache_sys_bytes", "Number of bytes used for mcache structures obtained from system. Equals to /memory/classes/metadata/mcache/inuse:bytes + /memory/classes/metadata/mcache/free:bytes.", u(rmMCacheInuse)+u(rmMCacheFree)),
		gauge("go_memstats_buck_hash_sys_bytes", "Number of bytes used by the profiling bucket hash table. Equals to /memory/classes/profiling/buckets:bytes.", u(rmBuckets)),
		gauge("go_memstats_gc_sys_bytes", "Number of bytes used for garbage collection system metadata. Equals to /memory/classes/metadata/other:bytes.", u(rmMetadataOther)),
		gauge("go_memstats_other_sys_bytes", "Number of bytes used for other system allocations. Equals to /memory/classes/other:bytes.", u(rmOther)),
		gauge("go_memstats_next_gc_bytes", "Number of heap bytes when next garbage collection will take place. Equals to /gc/heap/goal:bytes.", u(rmHeapGoal)),
	}
	// The runtime settings client_golang exported by default, with help
	// texts that were the runtime's description plus where it came from.
	for _, s := range []struct {
		i          int
		name, help string
	}{
		{rmGOGC, "go_gc_gogc_percent", "Heap size target percentage configured by the user, otherwise 100. This value is set by the GOGC environment variable, and the runtime/debug.SetGCPercent function. Sourced from /gc/gogc:percent."},
		{rmGOMEMLIMIT, "go_gc_gomemlimit_bytes", "Go runtime memory limit configured by the user, otherwise math.MaxInt64. This value is set by the GOMEMLIMIT environment variable, and the runtime/debug.SetMemoryLimit function. Sourced from /gc/gomemlimit:bytes."},
		{rmGOMAXPROCS, "go_sched_gomaxprocs_threads", "The current runtime.GOMAXPROCS setting, or the number of operating system threads that can execute user-level Go code simultaneously. Sourced from /sched/gomaxprocs:threads."},
	} {
		if samples[s.i].Value.Kind() == rtmetrics.KindUint64 {
			fams = append(fams, gauge(s.name, s.help, u(s.i)))
		}
	}
	return fams
}
