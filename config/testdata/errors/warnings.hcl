domain "alpha" {
  priority = 5
  device "yubikey" {
    vendor = "1050"
    serial = "12345678"
  }
  device "receiver" {
    vendor  = "046d"
    product = "c52b"
  }
}

domain "beta" {
  priority = 5
  device "receiver" { # WARNING: Same device wanted at the same priority
    ids = ["046d:c52b"]
  }
  device "kbd" { # WARNING: Device rule never applies
    vendor  = "04d9"
    product = "0006"
  }
}

domain "gamma" {
  priority = 9
  device "receiver" {
    vendor  = "046d"
    product = "c52b"
  }
}

domain "idle" { # WARNING: Domain wants no device
}

exclude "host-kbd" {
  ids = ["04d9:0006"]
}
