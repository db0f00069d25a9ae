package ship

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// cursor is where a stream's shipping resumes: the first segment with seq ≥ Seq, at block
// offset Off (0: its first block). Inflight describes a batch that was being sent when the
// file was written: if the process dies before the next write, up to InflightRecords records
// after the cursor may already be in Kafka and will be sent again ("possible duplicates").
type cursor struct {
	Seq             uint64 `json:"seq"`
	Off             int64  `json:"off"`
	InflightRecords int64  `json:"inflight_records,omitempty"`
}

func cursorPath(dir, stream string) string { return filepath.Join(dir, stream+".cursor") }

func loadCursor(dir, stream string) (cursor, error) {
	var c cursor
	b, err := os.ReadFile(cursorPath(dir, stream))
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("ship: cursor %s: %w", cursorPath(dir, stream), err)
	}
	return c, nil
}

// saveCursor replaces the cursor file atomically: write a temp file, fsync it, rename it over
// the old one. A crash leaves either the old or the new cursor, never a torn one. The
// directory is not fsynced: if a power cut loses the rename, the cursor falls back to the
// previous one and one batch is shipped again, which at-least-once allows, and it saves a
// second fsync per batch (~5 ms on this machine's disk). durable=false skips the fsync too; it
// is used for the in-flight marker, which only feeds a statistic and is superseded by the
// durable write after the acknowledgement.
func saveCursor(dir, stream string, c cursor, durable bool) error {
	b, _ := json.Marshal(c)
	path := cursorPath(dir, stream)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if durable {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
