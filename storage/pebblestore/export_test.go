package pebblestore

import "time"

// Settle waits up to timeout for every day's compactions to finish, so benchmarks measure
// reads in steady state rather than against a freshly written, unsettled LSM.
func (s *Store) Settle(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		busy := false
		s.mu.RLock()
		for _, db := range s.days {
			m := db.Metrics()
			busy = busy || m.Compact.NumInProgress > 0
		}
		s.mu.RUnlock()
		if !busy {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}
