package main

/*
#include <malloc.h>
*/
import "C"

// trimCHeap returns the C heap's free pages to the OS. libudev's device
// enumeration and libvirt's first listing malloc and free a few hundred KB
// in per-thread arenas, which glibc keeps mapped; usbctld calls this once,
// after its first complete sync.
func trimCHeap() { C.malloc_trim(0) }
