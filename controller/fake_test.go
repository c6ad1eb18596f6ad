package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/usbctl/usbctl/failure"
	"github.com/usbctl/usbctl/reconcile"
)

// The fakes' errors carry their class, as virt's do.
var (
	errBusy    = failure.New(failure.Permanent, "fake: device in use")
	errFlaky   = errors.New("fake: transient failure")
	errFull    = failure.New(failure.Transient, "fake: no free usb port", failure.WakeOn(failure.WakeDomainDevices))
	errNoDom   = failure.New(failure.DomainGone, "fake: no such domain")
	errOffline = failure.New(failure.Disconnected, "fake: connection lost")
)

// fakeHV is an in-memory hypervisor that records every mutating call, like
// sample-controller's fake clientset: tests seed state, run syncs and compare
// the calls.
type fakeHV struct {
	mu      sync.Mutex
	domains map[string]*reconcile.Domain
	calls   []string
	// failAttach makes attaches of a device key fail with the error, as
	// long as the entry is there.
	failAttach map[reconcile.DeviceKey]error
	lists      int
	// asyncDetach: a detach is accepted and the hostdev stays until
	// finishDetaches, as libvirt's stays until QEMU is done.
	asyncDetach bool
	detaching   []hostdevKey
}

// finishDetaches removes the hostdevs of the detaches accepted so far.
func (f *fakeHV) finishDetaches() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range f.detaching {
		if d, ok := f.domains[k.domain]; ok {
			d.Hostdevs = slices.DeleteFunc(d.Hostdevs, func(h reconcile.Hostdev) bool { return h.Alias == k.alias })
		}
	}
	f.detaching = nil
}

func newFakeHV(domains ...reconcile.Domain) *fakeHV {
	f := &fakeHV{domains: map[string]*reconcile.Domain{}, failAttach: map[reconcile.DeviceKey]error{}}
	for _, d := range domains {
		d := d
		f.domains[d.Name] = &d
	}
	return f
}

func (f *fakeHV) ListDomains(ctx context.Context) ([]reconcile.Domain, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	return listCopies(f.domains), nil
}

func (f *fakeHV) Domain(ctx context.Context, name string) (reconcile.Domain, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return domainCopy(f.domains, name)
}

// listCopies and domainCopy read an in-memory hypervisor's domains as
// libvirt would: copies, so the controller never shares a slice with it.
func listCopies(domains map[string]*reconcile.Domain) []reconcile.Domain {
	out := make([]reconcile.Domain, 0, len(domains))
	for _, d := range domains {
		c := *d
		c.Hostdevs = slices.Clone(d.Hostdevs)
		out = append(out, c)
	}
	return out
}

func domainCopy(domains map[string]*reconcile.Domain, name string) (reconcile.Domain, error) {
	d, ok := domains[name]
	if !ok {
		return reconcile.Domain{}, fmt.Errorf("domain %s: %w", name, errNoDom)
	}
	c := *d
	c.Hostdevs = slices.Clone(d.Hostdevs)
	return c, nil
}

// Attach and Detach name what failed as virt does: "attach ALIAS to DOM: ".
func (f *fakeHV) Attach(ctx context.Context, domain string, key reconcile.DeviceKey) error {
	if err := f.attach(domain, key); err != nil {
		return fmt.Errorf("attach %s to %s: %w", key.Alias(), domain, err)
	}
	return nil
}

func (f *fakeHV) attach(domain string, key reconcile.DeviceKey) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("attach %s %s", domain, key))
	if err := f.failAttach[key]; err != nil {
		return err
	}
	d, ok := f.domains[domain]
	if !ok {
		return errNoDom
	}
	if !d.State.Active() {
		return fmt.Errorf("domain %s not running: %w", domain, errNoDom)
	}
	for _, h := range d.Hostdevs {
		if h.Alias == key.Alias() {
			return fmt.Errorf("duplicate alias %s in %s", h.Alias, domain)
		}
	}
	d.Hostdevs = append(d.Hostdevs, reconcile.Hostdev{Alias: key.Alias(), Bus: key.Bus, Dev: key.Dev})
	return nil
}

func (f *fakeHV) Detach(ctx context.Context, domain, alias string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("detach %s %s", domain, alias))
	d, ok := f.domains[domain]
	if !ok {
		return fmt.Errorf("detach %s from %s: %w", alias, domain, errNoDom)
	}
	if f.asyncDetach {
		f.detaching = append(f.detaching, hostdevKey{domain, alias})
		return nil
	}
	d.Hostdevs = slices.DeleteFunc(d.Hostdevs, func(h reconcile.Hostdev) bool { return h.Alias == alias })
	return nil
}

func (f *fakeHV) setState(name string, s reconcile.DomainState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.domains[name]
	d.State = s
	if !s.Active() {
		d.Hostdevs = nil // a stopped domain loses its live devices
	}
}

func (f *fakeHV) setFail(k reconcile.DeviceKey, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.failAttach, k)
	} else {
		f.failAttach[k] = err
	}
}

func (f *fakeHV) takeCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func (f *fakeHV) hostdevs(name string) []reconcile.Hostdev {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.domains[name].Hostdevs)
}

// fakeDevices is the udev enumeration.
type fakeDevices struct {
	mu    sync.Mutex
	devs  []reconcile.Device
	lists int
}

func (f *fakeDevices) List(ctx context.Context) ([]reconcile.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	return slices.Clone(f.devs), nil
}

func (f *fakeDevices) set(devs ...reconcile.Device) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.devs = devs
}
