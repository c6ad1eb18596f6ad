package testhost

import "sync"

// calls pairs requests with their answers on a connection that carries
// both (QMP, the agent's channel): a caller takes an id and a channel, sends
// its request under that id and waits; the connection's reader delivers each
// answer by id. Once the connection is gone every waiter, and every later
// caller, gets the reason instead of waiting for an answer that cannot come.
type calls[V any] struct {
	mu      sync.Mutex
	next    uint64
	pending map[uint64]chan V
	err     error
}

// add takes a new id and the channel its answer will arrive on. The
// channel is closed without a value if the connection fails first; then
// failure says why.
func (c *calls[V]) add() (uint64, <-chan V, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, nil, c.err
	}
	if c.pending == nil {
		c.pending = map[uint64]chan V{}
	}
	c.next++
	ch := make(chan V, 1)
	c.pending[c.next] = ch
	return c.next, ch, nil
}

// newID takes an id that no answer is expected for (a fire-and-forget
// request such as the agent's cancel).
func (c *calls[V]) newID() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.next++
	return c.next
}

// drop forgets id: its caller stopped waiting, so a late answer is dropped.
func (c *calls[V]) drop(id uint64) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// deliver hands v to the caller waiting on id, if any still is.
func (c *calls[V]) deliver(id uint64, v V) {
	c.mu.Lock()
	ch := c.pending[id]
	delete(c.pending, id)
	c.mu.Unlock()
	if ch != nil {
		ch <- v // buffered, and delivered once
	}
}

// fail records why the connection is gone and wakes every waiter.
func (c *calls[V]) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.err = err
	for id, ch := range c.pending {
		close(ch)
		delete(c.pending, id)
	}
}

// failure is the error fail recorded (nil while the connection is up).
func (c *calls[V]) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}
