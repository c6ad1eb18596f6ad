# shared-by-priority.hcl: two VMs share a webcam and headset. Whichever is
# running gets them; when both run, the work VM wins.
#
# How it plays out:
#   - Only "media" runs: it gets the devices.
#   - "work" starts while "media" holds them: work has the higher priority
#     and preempt = true, so the devices move to work. Without preempt they
#     would stay with media until it stops or no longer wants them.
#   - "work" stops: media still wants them, so they go back to media.
#   - Both start together: work gets them (higher priority).
# At equal priority the first domain by name would win and the device would
# stay where it is; usbctl check warns about that, so give each VM its own
# priority.

libvirt {
  uri = "qemu:///system"
}

domain "work" {
  priority = 20
  preempt  = true

  # lsusb: ID 046d:082d Logitech, Inc. HD Pro Webcam C920
  device "webcam" {
    vendor  = "046d"
    product = "082d"
  }
  # lsusb: ID 046d:0a44 Logitech, Inc. Headset H390
  device "headset" {
    vendor  = "046d"
    product = "0a44"
  }
}

domain "media" {
  priority = 10
  # preempt is false by default. It would only matter if media had the
  # higher priority: preempt lets a domain take a device from a running
  # domain of lower priority.

  device "webcam" {
    vendor  = "046d"
    product = "082d"
  }
  device "headset" {
    vendor  = "046d"
    product = "0a44"
  }
}
