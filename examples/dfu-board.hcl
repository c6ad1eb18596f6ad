# dfu-board.hcl: an STM32 development board that the firmware VM keeps
# across re-flashing.
#
# The board enumerates as a USB serial port while its firmware runs
# (lsusb: ID 0483:5740 STMicroelectronics Virtual COM Port), and as another
# device when it reboots into the ROM bootloader to be flashed
# (ID 0483:df11 STMicroelectronics STM Device in DFU Mode). `ids` lists both,
# so whichever the board currently is goes to the VM: when it re-enumerates
# the old device is gone (detached as "device unplugged") and the new one is
# attached, and dfu-util inside the guest sees the bootloader.

libvirt {
  uri = "qemu:///system"
}

domain "firmware-dev" {
  device "stm32-board" {
    # Any one of the ids is enough. A block uses either vendor/product or
    # ids, not both.
    ids = ["0483:5740", "0483:df11"]

    # With several such boards on the desk, pin this block to one socket as
    # well (every criterion given must hold):
    # port = "3-2"
  }
}
