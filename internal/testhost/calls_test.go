package testhost

import (
	"errors"
	"testing"
)

func TestCallsDeliverByID(t *testing.T) {
	var c calls[string]
	id1, ch1, err := c.add()
	if err != nil {
		t.Fatal(err)
	}
	id2, ch2, _ := c.add()
	if id1 == id2 {
		t.Fatalf("two calls got the same id %d", id1)
	}
	c.deliver(id2, "two")
	c.deliver(id1, "one")
	if v := <-ch1; v != "one" {
		t.Errorf("call %d got %q, want one", id1, v)
	}
	if v := <-ch2; v != "two" {
		t.Errorf("call %d got %q, want two", id2, v)
	}
	// A second answer under a used id, or one for an id never taken, is
	// dropped rather than blocking the reader.
	c.deliver(id1, "again")
	c.deliver(999, "stray")
}

func TestCallsDropThenLateAnswer(t *testing.T) {
	var c calls[int]
	id, ch, _ := c.add()
	c.drop(id)
	c.deliver(id, 7)
	select {
	case v, ok := <-ch:
		t.Fatalf("a dropped call received %v (ok %v)", v, ok)
	default:
	}
}

func TestCallsFailWakesWaitersAndLaterCallers(t *testing.T) {
	var c calls[int]
	_, ch, _ := c.add()
	gone := errors.New("connection closed")
	c.fail(gone)
	if _, ok := <-ch; ok {
		t.Fatal("a waiter got a value after the connection failed")
	}
	if err := c.failure(); !errors.Is(err, gone) {
		t.Fatalf("failure() = %v, want %v", err, gone)
	}
	if _, _, err := c.add(); !errors.Is(err, gone) {
		t.Fatalf("add after failure: err %v, want %v", err, gone)
	}
	if id := c.newID(); id == 0 {
		t.Fatal("newID after failure returned 0")
	}
}
