package l2guest

import (
	"bytes"
	"fmt"
)

// cpioWriter writes the "newc" cpio format the kernel unpacks into its
// initramfs (Documentation/driver-api/early-userspace/buffer-format.rst).
// Written here rather than by cpio(1) so entries need no files on disk: the
// console device node in particular, which only root could mknod.
type cpioWriter struct {
	buf *bytes.Buffer
	ino uint32
}

func newCpio(buf *bytes.Buffer) *cpioWriter { return &cpioWriter{buf: buf, ino: 1} }

const (
	modeDir     = 0o040000
	modeFile    = 0o100000
	modeSymlink = 0o120000
	modeChar    = 0o020000
)

func (w *cpioWriter) dir(name string) { w.entry(name, modeDir|0o755, 0, 0, nil) }

func (w *cpioWriter) file(name string, perm uint32, data []byte) {
	w.entry(name, modeFile|perm, 0, 0, data)
}

func (w *cpioWriter) symlink(name, target string) {
	w.entry(name, modeSymlink|0o777, 0, 0, []byte(target))
}

func (w *cpioWriter) charDev(name string, major, minor uint32) {
	w.entry(name, modeChar|0o600, major, minor, nil)
}

func (w *cpioWriter) trailer() { w.entry("TRAILER!!!", 0, 0, 0, nil) }

func (w *cpioWriter) entry(name string, mode, rmajor, rminor uint32, data []byte) {
	nlink := uint32(1)
	if mode&0o170000 == modeDir {
		nlink = 2
	}
	ino := w.ino
	w.ino++
	// magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
	// devminor, rdevmajor, rdevminor, namesize (with its NUL), check.
	fmt.Fprintf(w.buf, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rmajor, rminor, len(name)+1, 0)
	w.buf.WriteString(name)
	w.buf.WriteByte(0)
	w.pad()
	w.buf.Write(data)
	w.pad()
}

// pad aligns to 4 bytes; the header is 110 bytes, so name padding counts
// from the start of the entry, which is itself aligned.
func (w *cpioWriter) pad() {
	for w.buf.Len()%4 != 0 {
		w.buf.WriteByte(0)
	}
}
