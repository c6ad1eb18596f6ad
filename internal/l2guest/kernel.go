package l2guest

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// ExtractKernel writes the uncompressed ELF kernel inside the bzImage at
// vmlinuz into dir and returns its path. The guest boots that instead of the
// bzImage: QEMU loads an ELF kernel with a PVH note (Debian's has
// CONFIG_PVH) and enters it directly, which skips the bzImage's own
// decompressor. Under TCG that decompressor is most of the boot: on this
// machine the first kernel line came 6.0 s after start with the bzImage and
// 0.57 s with the ELF, the rest of the boot being ~3.7 s either way.
func ExtractKernel(ctx context.Context, dir, vmlinuz string) (string, error) {
	img, err := os.ReadFile(vmlinuz)
	if err != nil {
		return "", fmt.Errorf("read kernel %s: %w", vmlinuz, err)
	}
	payload, err := bzPayload(img)
	if err != nil {
		return "", fmt.Errorf("kernel %s: %w", vmlinuz, err)
	}
	var tool []string
	switch {
	case bytes.HasPrefix(payload, []byte("\xfd7zXZ\x00")):
		tool = []string{"xz", "-dc", "--single-stream"}
	case bytes.HasPrefix(payload, []byte("\x28\xb5\x2f\xfd")):
		tool = []string{"zstd", "-dc"}
	case bytes.HasPrefix(payload, []byte("\x1f\x8b")):
		tool = []string{"gzip", "-dc"}
	default:
		return "", fmt.Errorf("kernel %s: payload compressed with an unsupported method (magic % x)", vmlinuz, payload[:min(6, len(payload))])
	}
	path := filepath.Join(dir, "vmlinux-"+filepath.Base(vmlinuz))
	out, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return "", fmt.Errorf("create %s: %w", path, err)
	}
	cmd := exec.CommandContext(ctx, tool[0], tool[1:]...)
	cmd.Stdin = bytes.NewReader(payload)
	cmd.Stdout = out
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	runErr := cmd.Run()
	closeErr := out.Close()
	if runErr != nil {
		// The payload is followed by the decompressor's size trailer, which
		// gzip reports as trailing garbage with a warning exit; a warning (2)
		// with output is fine, anything else is not.
		if ee, ok := runErr.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			return "", fmt.Errorf("decompress kernel %s with %s: %w: %s", vmlinuz, tool[0], runErr, bytes.TrimSpace(stderr.Bytes()))
		}
	}
	if closeErr != nil {
		return "", fmt.Errorf("write %s: %w", path, closeErr)
	}
	head := make([]byte, 4)
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	if _, err := f.Read(head); err != nil || string(head) != "\x7fELF" {
		return "", fmt.Errorf("kernel %s: decompressed payload is not an ELF file", vmlinuz)
	}
	return path, nil
}

// bzPayload returns the compressed kernel inside a bzImage, located by the
// boot protocol's setup header (Documentation/arch/x86/boot.rst): the
// protected-mode part starts after setup_sects+1 sectors, and payload_offset
// and payload_length (protocol 2.08+) locate the payload in it.
func bzPayload(img []byte) ([]byte, error) {
	if len(img) < 0x250 || string(img[0x202:0x206]) != "HdrS" {
		return nil, fmt.Errorf("not a bzImage (no setup header)")
	}
	if v := binary.LittleEndian.Uint16(img[0x206:]); v < 0x208 {
		return nil, fmt.Errorf("boot protocol %#x has no payload fields", v)
	}
	setup := int(img[0x1f1])
	if setup == 0 {
		setup = 4
	}
	start := (setup+1)*512 + int(binary.LittleEndian.Uint32(img[0x248:]))
	n := int(binary.LittleEndian.Uint32(img[0x24c:]))
	if start < 0 || n <= 0 || start+n > len(img) {
		return nil, fmt.Errorf("payload %d+%d outside the %d-byte image", start, n, len(img))
	}
	return img[start : start+n], nil
}

// InstalledKernel finds a kernel the guest can boot on this machine: a
// version with both /boot/vmlinuz-VERSION and /lib/modules/VERSION (Debian's
// linux-image-amd64). The running kernel is not preferred: on the machines
// this project tests on it is a host kernel without USB.
func InstalledKernel() (version, vmlinuz string, err error) {
	ents, err := os.ReadDir("/lib/modules")
	if err != nil {
		return "", "", fmt.Errorf("find an installed kernel for the l2 guest: %w", err)
	}
	for i := len(ents) - 1; i >= 0; i-- {
		v := ents[i].Name()
		p := "/boot/vmlinuz-" + v
		if _, err := os.Stat(filepath.Join("/lib/modules", v, "modules.dep")); err != nil {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return v, p, nil
		}
	}
	return "", "", fmt.Errorf("find an installed kernel for the l2 guest: no /boot/vmlinuz-V with /lib/modules/V (install linux-image-amd64)")
}
