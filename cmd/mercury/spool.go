package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/mercury-apm/mercury/agent/spool"
	"github.com/mercury-apm/mercury/schemas"
)

func runSpool(_ context.Context, args []string) error {
	if len(args) == 0 || args[0] != "cat" {
		return errors.New("usage: mercury spool cat [-stream spans|events|heartbeats|all] DIR")
	}
	fs := flag.NewFlagSet("spool cat", flag.ContinueOnError)
	stream := fs.String("stream", "all", "stream to print: spans, events, heartbeats or all")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: mercury spool cat [-stream spans|events|heartbeats|all] DIR")
	}
	streams := spool.Streams
	if *stream != "all" {
		streams = []string{*stream}
	}
	if fi, err := os.Stat(fs.Arg(0)); err != nil {
		return fmt.Errorf("spool %w", err)
	} else if !fi.IsDir() {
		return fmt.Errorf("spool %s: not a directory (want the agent's spool root, holding spans/, events/, heartbeats/)", fs.Arg(0))
	}
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	return catSpool(out, fs.Arg(0), streams, os.Stderr)
}

// catSpool writes one JSON object per record: the record's fields as the writer schema names
// them, ids and bytes in hex, plus "stream".
func catSpool(w io.Writer, root string, streams []string, warn io.Writer) error {
	enc := json.NewEncoder(w)
	for _, st := range streams {
		if !validStream(st) {
			return fmt.Errorf("unknown stream %q", st)
		}
		res, err := spool.Scan(root, st, func(s *schemas.Schema, body []byte) error {
			native, _, err := s.Codec.NativeFromBinary(body)
			if err != nil {
				return fmt.Errorf("%s: %w", st, err)
			}
			m := hexBytes(native).(map[string]any)
			m["stream"] = st
			return enc.Encode(m)
		})
		if err != nil {
			return err
		}
		if res.Unreadable > 0 {
			fmt.Fprintf(warn, "mercury spool cat: %s: skipped %d unreadable segment(s)\n", st, res.Unreadable)
		}
		if d := res.Damage; d.Blocks > 0 {
			fmt.Fprintf(warn, "mercury spool cat: %s: stepped over %d damaged block(s), %d bytes, %d records lost (as far as block headers say)\n", st, d.Blocks, d.Bytes, d.Records)
		}
		if res.Unfinished > 0 {
			fmt.Fprintf(warn, "mercury spool cat: %s: %d bytes at the end of the newest segment are a block still being written (or torn by a crash)\n", st, res.Unfinished)
		}
	}
	return nil
}

func validStream(s string) bool {
	for _, v := range spool.Streams {
		if v == s {
			return true
		}
	}
	return false
}

// hexBytes renders goavro's []byte natives (fixed ids, sketches) as hex strings.
func hexBytes(v any) any {
	switch x := v.(type) {
	case []byte:
		return hex.EncodeToString(x)
	case map[string]any:
		for k, e := range x {
			x[k] = hexBytes(e)
		}
	case []any:
		for i, e := range x {
			x[i] = hexBytes(e)
		}
	}
	return v
}
