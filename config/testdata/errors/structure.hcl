libvirt {
  uri = "qemu:///system"
}

libvirt { # ERROR: Duplicate libvirt block
  uri = "qemu:///session"
}

domain "win11" {
  priority = "high" # ERROR: Unsuitable value type
  mode     = "whitelist" # ERROR: Invalid mode
  preempt  = true
  colour   = "blue" # ERROR: Unsupported argument

  device "receiver" {
    vendor  = "046d"
    product = "c52b"
    speed   = "480" # ERROR: Unsupported argument
  }
  device "receiver" { # ERROR: Duplicate device label
    vendor = "046d"
  }
  device "nothing" { # ERROR: Device block with no criteria
  }
  usb "x" { # ERROR: Unsupported block type
  }
}

domain "win11" { # ERROR: Duplicate domain
  device "pad" {
    vendor = "045e"
  }
}

domain "bad/name" { # ERROR: Invalid domain name
  mode = "all"
}

domain "gamer" {
  mode = "all"
  device "extra" { # ERROR: Device block in mode "all"
    vendor = "046d"
  }
}

exclude "host-kbd" {
  vendor  = "04d9"
  product = "0006"
}

exclude "host-kbd" { # ERROR: Duplicate exclude label
  vendor = "04d9"
}

exclude "void" { # ERROR: Exclude excludes nothing
}
