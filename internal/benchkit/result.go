package benchkit

import "time"

// Sample is one plug of the real-stack benchmark: uevent → device-added, and for usbctld and the
// floor the unplug's uevent → device-removed.
type Sample struct {
	Mode   string        `json:"mode"`
	Dev    int           `json:"dev"`
	Add    time.Duration `json:"add_ns"`
	Remove time.Duration `json:"remove_ns,omitempty"`
	// Run and Wait are usbctld's threads' time on CPU and runnable but
	// waiting for one, from before the plug to the device-added (usbctld
	// is frozen in the floor and virsh rounds: zero there).
	Run  time.Duration `json:"usbctld_run_ns"`
	Wait time.Duration `json:"usbctld_wait_ns"`
}

// Start is one guest start: Create → the last device-added.
type Start struct {
	Create time.Duration `json:"create_ns"` // virDomainCreate's own return
	All    time.Duration `json:"all_ns"`    // to the last of the devices' device-added
	First  time.Duration `json:"first_ns"`  // to the first
	// Aliases are the hostdevs added, in the order their events came.
	Aliases []string `json:"aliases"`
}

// Result is what internal/benchreal prints as JSON and e2e/kernel's
// TestBench reads back.
type Result struct {
	Samples []Sample `json:"samples,omitempty"`
	Starts  []Start  `json:"starts,omitempty"`
	Notes   []string `json:"notes,omitempty"`
}
