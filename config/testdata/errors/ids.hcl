domain "win11" {
  device "receiver" {
    vendor  = "46d"  # ERROR: Invalid vendor id
    product = "c52b"
  }
  device "mouse" {
    vendor  = "046d"
    product = "c5zz" # ERROR: Invalid product id
  }
  device "only-product" {
    product = "1872" # ERROR: Product without vendor
  }
  device "stm32" {
    ids = [
      "0483:5740",
      "0483-df11", # ERROR: Invalid id
      "*:*",       # ERROR: Invalid id
      "0b05:", ":1872", "0b05:*", "*:1872",
    ]
  }
  device "everything" {
    ids = ["*:*"] # ERROR: Invalid id
  }
  device "both" {
    vendor = "046d"
    ids    = ["046d:c52b"] # ERROR: Both vendor and ids
  }
  device "empty-ids" {
    ids = [] # ERROR: Empty ids
  }
  device "wrong-type" {
    ids = "0483:5740" # ERROR: Invalid ids
  }
}
