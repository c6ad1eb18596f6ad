domain "asker" {
  mode = "ask"
  device "receiver" { ids = ["046d:c52b"] }
  device "again" { # WARNING: Ask in mode "ask"
    ids = ["1050:0407"]
    ask = true
  }
}

domain "denier" {
  mode = "deny"
  device "kbd" { # ERROR: Ask in mode "deny"
    ids = ["04d9:0006"]
    ask = true
  }
}

domain "sticks" {
  device "any-stick" {
    class = "mass-storage"
    ask   = true
  }
  device "bad" {
    ids = ["0781:5583"]
    ask = "maybe" # ERROR: Unsuitable value type
  }
}

exclude "kbd" {
  ids = ["04d9:0006"]
  ask = true # ERROR: Unsupported argument
}
