package pebblestore

import (
	"time"

	"github.com/mercury-apm/mercury/storage/pebbledb"
)

// Settle waits up to timeout for every day's compactions to finish, so benchmarks measure
// reads in steady state rather than against a freshly written, unsettled LSM.
func (s *Store) Settle(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		busy := false
		s.days.Read(func(v pebbledb.View) error {
			for _, d := range v.Newest() {
				busy = busy || v.DB(d).Metrics().Compact.NumInProgress > 0
			}
			return nil
		})
		if !busy {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}
