package reliability

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mercury-apm/mercury/agent/spool"
)

// disk is an agent's spool disk: healthy, stalled (writes hang) or full (writes fail with
// ENOSPC), for the time the schedule says.
type disk struct {
	stalledUntil, fullUntil atomic.Int64 // unix nanos
}

func (d *disk) open(path string) (spool.File, error) {
	f, err := spool.CreateSegmentFile(path)
	if err != nil {
		return nil, err
	}
	return diskFile{f, d}, nil
}

type diskFile struct {
	spool.File
	d *disk
}

func (f diskFile) Write(b []byte) (int, error) {
	for time.Now().UnixNano() < f.d.stalledUntil.Load() {
		time.Sleep(5 * time.Millisecond)
	}
	if time.Now().UnixNano() < f.d.fullUntil.Load() {
		return 0, syscall.ENOSPC
	}
	return f.File.Write(b)
}

// outage puts a store's HTTP endpoint in front of its fake and makes it refuse every request
// while down, the way the real server does when overloaded; refuse queues the refusal in
// the fake so the reply carries the server's own error body.
type outage struct {
	until  atomic.Int64
	refuse func()
}

func (o *outage) serve(next http.Handler) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if time.Now().UnixNano() < o.until.Load() {
			o.refuse()
		}
		next.ServeHTTP(w, r)
	}))
}

// Kinds of fault. Every kind is injected at least once per run.
const (
	killShipper   = "SIGKILL shipper"
	killCollector = "SIGKILL collector"
	killPhase1    = "SIGKILL aggregator phase 1"
	killPhase2    = "SIGKILL aggregator phase 2"
	killAlerter   = "SIGKILL alerter"
	killBroker    = "SIGKILL broker"
	stallDisk     = "spool disk stalled"
	fillDisk      = "spool disk full"
	esRefuses     = "Elasticsearch answers 429"
	hbaseRefuses  = "HBase REST answers 503"
)

var faultKinds = []string{killShipper, killCollector, killPhase1, killPhase2, killAlerter, killBroker, stallDisk, fillDisk, esRefuses, hbaseRefuses}

// fault is one planned injection.
type fault struct {
	at     time.Duration // after the traffic starts (a kill waits while its daemon is down from the last one)
	kind   string
	target int           // which shipper or spool disk (one per agent)
	length time.Duration // how long a disk or store fault lasts, or a killed daemon stays down
}

func (f fault) String() string {
	what := f.kind
	switch f.kind {
	case killShipper, stallDisk, fillDisk:
		what += fmt.Sprintf(" (%s)", serviceNames[f.target])
	case killCollector:
		what += fmt.Sprintf(" (%d of 2)", f.target%2+1)
	}
	return fmt.Sprintf("%6.1f s  %-40s for %v", f.at.Seconds(), what, f.length.Round(time.Millisecond))
}

// plan draws the schedule: every kind once plus extra random ones, spread over the middle
// of the traffic's duration, in time order. The same seed gives the same plan.
func plan(rng *rand.Rand, over time.Duration, extra, agents int) []fault {
	kinds := slices.Clone(faultKinds)
	for range extra {
		kinds = append(kinds, faultKinds[rng.IntN(len(faultKinds))])
	}
	var fs []fault
	for _, k := range kinds {
		f := fault{at: over/20 + time.Duration(rng.Int64N(int64(over*17/20))), kind: k, target: rng.IntN(agents)}
		switch k {
		case stallDisk, fillDisk:
			// Over before the traffic ends: an agent closing on a full disk cannot write its
			// last heartbeat, and the audit check needs every heartbeat.
			f.length = min(time.Second+time.Duration(rng.Int64N(int64(2*time.Second))), over*19/20-f.at)
		case esRefuses, hbaseRefuses:
			f.length = 2*time.Second + time.Duration(rng.Int64N(int64(4*time.Second)))
		default:
			f.length = 200*time.Millisecond + time.Duration(rng.Int64N(int64(1800*time.Millisecond)))
		}
		fs = append(fs, f)
	}
	slices.SortFunc(fs, func(a, b fault) int { return int(a.at - b.at) })
	return fs
}
