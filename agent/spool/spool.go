// Package spool is the agent's on-disk buffer: one directory per stream of Avro Object Container
// File segments that any Avro tool reads. The agent appends (Writer); the shipper tails and
// deletes (SegmentReader). Segments are named by a 20-digit sequence that only grows, taken
// from the clock so it also orders segments across streams and restarts.
//
// A segment is sealed once a newer one exists in its directory: the writer finishes its last
// write to a segment before creating the next, and never reopens one. A crash can tear only the
// last block of a segment; readers skip such a tail once the segment is sealed.
package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Streams, each with its own directory and Kafka topic.
const (
	StreamSpans      = "spans"
	StreamEvents     = "events"
	StreamHeartbeats = "heartbeats"
)

// Streams lists every stream.
var Streams = []string{StreamSpans, StreamEvents, StreamHeartbeats}

const segmentExt = ".avro"

// Segment is one file of a stream.
type Segment struct {
	Stream, Path string
	Seq          uint64
	Size         int64
}

func segmentName(seq uint64) string { return fmt.Sprintf("%020d%s", seq, segmentExt) }

// ListSegments returns a stream's segments, oldest first. A missing directory has none.
func ListSegments(root, stream string) ([]Segment, error) {
	dir := filepath.Join(root, stream)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("spool: list %s: %w", dir, err)
	}
	var segs []Segment
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, segmentExt) || e.IsDir() {
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimSuffix(name, segmentExt), 10, 64)
		if err != nil {
			continue // not ours
		}
		info, err := e.Info()
		if err != nil {
			continue // deleted while listing
		}
		segs = append(segs, Segment{Stream: stream, Path: filepath.Join(dir, name), Seq: seq, Size: info.Size()})
	}
	sortSegments(segs)
	return segs, nil
}

func sortSegments(segs []Segment) {
	sort.Slice(segs, func(i, j int) bool { return segs[i].Seq < segs[j].Seq })
}
