package l2guest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"time"
)

// qmp is the least QMP client the boot test needs: one command at a time,
// events skipped.
type qmp struct {
	c  net.Conn
	rd *bufio.Reader
}

func dialQMP(path string, timeout time.Duration) (*qmp, error) {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.Dial("unix", path)
		if err == nil {
			q := &qmp{c: c, rd: bufio.NewReader(c)}
			if _, err := q.rd.ReadBytes('\n'); err != nil { // greeting
				return nil, fmt.Errorf("qmp greeting: %w", err)
			}
			if _, err := q.run("qmp_capabilities", nil); err != nil {
				return nil, err
			}
			return q, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("dial qmp %s: %w", path, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (q *qmp) run(cmd string, args any) (json.RawMessage, error) {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, _ := json.Marshal(req)
	if _, err := q.c.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("qmp %s: %w", cmd, err)
	}
	for {
		line, err := q.rd.ReadBytes('\n')
		if err != nil {
			return nil, fmt.Errorf("qmp %s: %w", cmd, err)
		}
		var resp struct {
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Desc string `json:"desc"`
			} `json:"error"`
			Event string `json:"event"`
		}
		if err := json.Unmarshal(line, &resp); err != nil {
			return nil, fmt.Errorf("qmp %s: %w", cmd, err)
		}
		switch {
		case resp.Event != "":
		case resp.Error != nil:
			return nil, fmt.Errorf("qmp %s: %s", cmd, resp.Error.Desc)
		default:
			return resp.Return, nil
		}
	}
}
