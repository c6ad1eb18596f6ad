package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/usbctl/usbctl/reconcile"
)

// Release detaches every device usbctl attached, in every active domain,
// from a fresh listing. The daemon calls it on stop when asked to give the
// devices back; by default stopping leaves guests undisturbed. Call it only
// after Run has returned.
func (c *Controller) Release(ctx context.Context) error {
	ds, err := c.callList(ctx)
	if err != nil {
		return fmt.Errorf("release devices: %w", err)
	}
	var errs []error
	asked := 0
	for dom, h := range ownedActive(ds) {
		k, _ := h.Key()
		if err := c.do(ctx, reconcile.Action{Kind: reconcile.Detach, Domain: dom, Alias: h.Alias, Key: k}); err != nil {
			errs = append(errs, err)
			continue
		}
		c.log.Info("released", "domain", dom, "alias", h.Alias)
		asked++
	}
	// libvirt returns once QEMU was asked; the device is back on the
	// host only when QEMU is done. Wait for that, so that when the
	// service has stopped the devices are really released.
	for asked > 0 {
		ds, err := c.callList(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("release devices: %w", err))
			break
		}
		left := 0
		for range ownedActive(ds) {
			left++
		}
		if left == 0 {
			break
		}
		select {
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("release devices: %d still detaching: %w", left, ctx.Err()))
			return errors.Join(errs...)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return errors.Join(errs...)
}
