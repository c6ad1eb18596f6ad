// Package wire is the protocol between the test host harness
// (internal/testhost) and its agent inside the test host: one JSON object
// per line each way over a virtio-serial port. Requests carry an ID; the
// agent answers each with a Response of the same ID, in any order, so
// requests run concurrently. The agent's first line is a Response with ID 0
// and Hello set, once it is ready.
package wire

// PortName is the virtio-serial port of the control channel.
const PortName = "testhost.agent"

// Ops of a Request.
const (
	OpRun    = "run"    // run Argv to its end; the answer has its output and exit
	OpStart  = "start"  // start Argv in the background, output to Log; the answer has its PID
	OpWait   = "wait"   // wait for the background process PID to end; the answer has its exit
	OpSignal = "signal" // send Signal to PID (to its process group if Group)
	OpCancel = "cancel" // kill the process of the OpRun request Ref
)

// Request asks the agent to do one thing.
type Request struct {
	ID     uint64   `json:"id"`
	Op     string   `json:"op"`
	Argv   []string `json:"argv,omitempty"`
	Env    []string `json:"env,omitempty"` // added to the agent's environment
	Dir    string   `json:"dir,omitempty"`
	Stdin  []byte   `json:"stdin,omitempty"`
	Log    string   `json:"log,omitempty"` // OpStart: file (inside) for stdout and stderr
	PID    int      `json:"pid,omitempty"`
	Signal int      `json:"signal,omitempty"`
	Group  bool     `json:"group,omitempty"`
	Ref    uint64   `json:"ref,omitempty"`
}

// Response answers the Request of the same ID.
type Response struct {
	ID     uint64 `json:"id"`
	Hello  string `json:"hello,omitempty"` // ID 0 only: the agent is ready; its mode
	Stdout []byte `json:"stdout,omitempty"`
	Stderr []byte `json:"stderr,omitempty"`
	// Exit is the exit status, or 128+signal when a signal ended the
	// process (as a shell reports it).
	Exit   int    `json:"exit"`
	Signal int    `json:"signal,omitempty"` // the signal that ended it, if any
	PID    int    `json:"pid,omitempty"`
	Err    string `json:"err,omitempty"` // the agent could not do it (not a non-zero exit)
}
