# Labels and blocks: what HCL itself would word in its own terms ("All
# exclude blocks must have 1 labels") is said here in the config's.

exclude {
  ids = ["04d9:0006"]
}

exclude {
  port = "1-1"
}

exclude "named" "twice" { # ERROR: Too many labels on exclude block
  port = "1-2"
}

libvirt "local" { # ERROR: Label on the libvirt block
  uri = "qemu:///system"
}

domain "a" "b" { # ERROR: Too many labels on domain block
  mode = "all"
}

domain "gamer" {
  device { # ERROR: Device block without a label
    ids = ["046d:c52b"]
  }
  devise "typo" { # ERROR: Unsupported block type
  }
  exclude "misplaced" { # ERROR: Unsupported block type
  }
  mode { # ERROR: Unsupported block type
  }
  vendor = "046d" # ERROR: Unsupported argument
  device = { # ERROR: Unsupported argument
    vendor = "046d"
  }
}

device "top" { # ERROR: Unsupported block type
  vendor = "046d"
}

uri = "qemu:///system" # ERROR: Unsupported argument
