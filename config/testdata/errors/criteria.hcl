domain "lab" {
  device "hub-port" {
    port = "1-4.*"
  }
  device "bad-port" {
    port = "usb1" # ERROR: Invalid port
  }
  device "bad-port2" {
    port = "1-4." # ERROR: Invalid port
  }
  device "deep" {
    port = "1-1.1.1.1.1.1.1" # ERROR: Invalid port
  }
  device "storage" {
    class = "mass-storage"
  }
  device "several" {
    class = ["hid", "0x0e", "ff"]
  }
  device "bad-class" {
    class = "keyboard" # ERROR: Invalid class
  }
  device "bad-class-type" {
    class = 3 # ERROR: Invalid class
  }
  device "per-interface-class" {
    class = "00" # ERROR: Invalid class
  }
  device "empty-serial" {
    serial = "" # ERROR: Empty serial
  }
}
