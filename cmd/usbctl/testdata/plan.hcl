domain "win11" {
  priority = 10
  device "receiver" {
    vendor  = "046d"
    product = "c52b"
  }
}

domain "lab" {
  device "desk-hub" {
    port = "1-4.*"
  }
  device "yubikey" {
    vendor = "1050"
    serial = "111"
  }
}

exclude "host-keyboard" {
  port = "1-1"
}
