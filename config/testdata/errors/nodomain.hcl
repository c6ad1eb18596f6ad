# WARNING: No domain configured
# A file with no domain block (empty, or only excludes) is valid, and a
# reload to it detaches everything usbctld attached: check warns.
exclude "kbd" {
  ids = ["04d9:0006"]
}
