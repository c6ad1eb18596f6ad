# Every problem of a block is reported, each on its own line, whatever
# else is wrong in the block; a block that cannot become a rule (a
# duplicate, one without a name) still has its contents checked.

domain "lab" {
  priority = "high" # ERROR: Unsuitable value type
  mode     = "sometimes" # ERROR: Invalid mode
  device "both-bad" {
    vendor  = "zzzz" # ERROR: Invalid vendor id
    product = "12345" # ERROR: Invalid product id
  }
  device "four-bad" {
    ids    = ["nope", "0483:df11"] # ERROR: Invalid id
    port   = "usb1" # ERROR: Invalid port
    class  = ["keyboard", "hid"] # ERROR: Invalid class
    serial = "" # ERROR: Empty serial
  }
  device "vendor-and-ids" {
    vendor = "04" # ERROR: Invalid vendor id
    ids    = ["0483:df11"] # ERROR: Both vendor and ids
  }
  device "four-bad" { # ERROR: Duplicate device label
    class = 3 # ERROR: Invalid class
  }
}

domain "lab" { # ERROR: Duplicate domain
  device "inside-duplicate" {
    vendor = "xyz" # ERROR: Invalid vendor id
  }
}

domain "everything" {
  mode = "all"
  device "bad-and-pointless" { # ERROR: Device block in mode "all"
    vendor = "q" # ERROR: Invalid vendor id
  }
}

domain { # ERROR: Domain block without a name
  device "checked-anyway" {
    port = "1-" # ERROR: Invalid port
  }
}

libvirt {
  uri = "qemu:///system"
}

libvirt { # ERROR: Duplicate libvirt block
  uri = "nonsense" # ERROR: Invalid libvirt URI
}

exclude "kbd" {
  ids = ["04d9:0006"]
}

exclude "kbd" { # ERROR: Duplicate exclude label
  product = "0006" # ERROR: Product without vendor
}
