package override

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/usbctl/usbctl/internal/atomicfile"
)

// FileVersion is the version of the state file's format.
const FileVersion = 1

// FileName is the state file's name in usbctld's state directory.
const FileName = "overrides.json"

type stateFile struct {
	Version   int        `json:"version"`
	Overrides []Override `json:"overrides"`
}

// Load reads the state file at path. A missing file is no overrides.
func Load(path string) ([]Override, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	var sf stateFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sf); err != nil {
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	if sf.Version != FileVersion {
		return nil, fmt.Errorf("state file %s: version %d, this usbctld reads version %d", path, sf.Version, FileVersion)
	}
	for i, o := range sf.Overrides {
		switch o.Lifetime {
		case UntilUnplug, For, UntilStop:
		default:
			return nil, fmt.Errorf("state file %s: override %d: unknown lifetime %q", path, i+1, o.Lifetime)
		}
		if o.Lifetime == UntilStop && o.Domain == "" {
			return nil, fmt.Errorf("state file %s: override %d: until-stop without a domain", path, i+1)
		}
	}
	return sf.Overrides, nil
}

// Save writes ovs to path atomically: a temporary file in the same
// directory, synced, renamed over the old one, and the directory synced, so
// a crash at any point leaves the old file or the new one, never a torn
// one.
func Save(path string, ovs []Override) error {
	if ovs == nil {
		ovs = []Override{}
	}
	b, err := json.MarshalIndent(stateFile{Version: FileVersion, Overrides: ovs}, "", "  ")
	if err != nil {
		return fmt.Errorf("state file %s: %w", path, err)
	}
	return atomicfile.Write(path, append(b, '\n'), 0o600)
}
