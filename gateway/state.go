package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"

	"github.com/mercury-apm/mercury/gateway/degrade"
)

// stateVersion is the state file's format.
const stateVersion = 1

// opsState is the operator's run-time state: what the admin API and plans
// changed. With Config.StateFile it is written on every change and restored
// by New, so a restart keeps a degraded route degraded and an applied plan
// applied (and revertible).
type opsState struct {
	Version     int                        `json:"version"`
	RetryGlobal bool                       `json:"retry_global"`
	RetryOff    []string                   `json:"retry_off,omitempty"`
	DyeEnabled  bool                       `json:"dye_enabled"`
	SampleRate  float64                    `json:"sample_rate"`
	ShedTiers   []int                      `json:"shed_tiers,omitempty"`
	Degrade     map[string]degrade.Setting `json:"degrade,omitempty"` // switches set by hand or by a plan
	Limits      map[string]int64           `json:"limits,omitempty"`  // rate limits a plan changed
	Plans       map[string]*planState      `json:"plans,omitempty"`   // applied plans and what they replaced
}

func degradeSetting(st degrade.Status) degrade.Setting {
	fb := st.Fallback
	return degrade.Setting{On: st.Manual, Fallback: &fb}
}

// snapshot collects the state; caller holds opsMu.
func (g *Gateway) snapshot() opsState {
	t := g.table.Load()
	s := opsState{Version: stateVersion, RetryGlobal: g.retries.Global(), RetryOff: g.retries.Off(),
		DyeEnabled: !g.dyeOff.Load(), SampleRate: g.sampleRate(),
		Degrade: map[string]degrade.Setting{}, Limits: map[string]int64{}, Plans: map[string]*planState{}}
	for tier := 1; tier <= 4; tier++ {
		if g.shedTiers[tier].Load() {
			s.ShedTiers = append(s.ShedTiers, tier)
		}
	}
	for _, name := range t.order {
		r := t.byName[name]
		if r.degrade != nil {
			st := r.degrade.Status()
			configured := r.cfg.Degrade.Fallback
			_ = configured.Validate() // New validated it; this fills the same defaults
			if st.Manual || st.Fallback != configured {
				s.Degrade[name] = degradeSetting(st)
			}
		}
		if r.limiter != nil && r.limiter.Stats().Limit != r.cfg.RateLimit.Limit {
			s.Limits[name] = r.limiter.Stats().Limit
		}
	}
	for name, p := range t.plans {
		if p.saved != nil {
			s.Plans[name] = p.saved
		}
	}
	return s
}

// saveState writes the state file atomically (temporary file, fsync,
// rename); caller holds opsMu. Without a state file it does nothing.
func (g *Gateway) saveState() error {
	path := g.cfg.StateFile
	if path == "" {
		return nil
	}
	b, err := json.MarshalIndent(g.snapshot(), "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	_, err = tmp.Write(append(b, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	return err
}

// persist saves the state after an admin change and answers 500 if that
// failed: the change is in force but would not survive a restart.
func (g *Gateway) persist(w http.ResponseWriter) bool {
	if err := g.saveState(); err != nil {
		httpError(w, http.StatusInternalServerError, "applied, but not saved to the state file: %v", err)
		return false
	}
	return true
}

// restoreState reads the state file, if there is one, and puts its state
// back. A malformed file is an error (New fails, naming it); entries for
// routes or plans the config no longer has are skipped with a warning.
func (g *Gateway) restoreState() error {
	path := g.cfg.StateFile
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("gateway: state file: %w", err)
	}
	var s opsState
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return fmt.Errorf("gateway: state file %s: %w", path, err)
	}
	if err := s.validate(); err != nil {
		return fmt.Errorf("gateway: state file %s: %w", path, err)
	}
	g.opsMu.Lock()
	defer g.opsMu.Unlock()
	t := g.table.Load()
	g.retries.SetGlobal(s.RetryGlobal)
	for _, svc := range s.RetryOff {
		g.retries.SetService(svc, false)
	}
	g.dyeOff.Store(!s.DyeEnabled)
	g.setSampleRate(s.SampleRate)
	for _, tier := range s.ShedTiers {
		g.shedTiers[tier].Store(true)
	}
	for name, set := range s.Degrade {
		r := t.byName[name]
		if r == nil || r.degrade == nil {
			g.log.Warn("state file names a route without a degrade switch; skipped", "route", name)
			continue
		}
		if _, err := r.degrade.Apply(set); err != nil {
			return fmt.Errorf("gateway: state file %s: route %q: %w", path, name, err)
		}
	}
	for name, limit := range s.Limits {
		r := t.byName[name]
		if r == nil || r.limiter == nil {
			g.log.Warn("state file names a route without a rate limit; skipped", "route", name)
			continue
		}
		_, _ = r.limiter.SetLimit(limit) // validated ≥ 1
	}
	for name, saved := range s.Plans {
		p := t.plans[name]
		if p == nil {
			g.log.Warn("state file names a plan the config no longer has; skipped", "plan", name)
			continue
		}
		p.saved = saved
	}
	return nil
}

func (s *opsState) validate() error {
	if s.Version != stateVersion {
		return fmt.Errorf("version %d, want %d", s.Version, stateVersion)
	}
	if s.SampleRate < 0 || s.SampleRate > 1 {
		return errors.New("sample_rate must be in [0,1]")
	}
	for _, tier := range s.ShedTiers {
		if tier < 1 || tier > 4 {
			return fmt.Errorf("shed tier %d is not 1–4", tier)
		}
	}
	for _, svc := range s.RetryOff {
		if !namePattern.MatchString(svc) {
			return fmt.Errorf("invalid service name %q", svc)
		}
	}
	limits := []map[string]int64{s.Limits}
	for _, p := range s.Plans {
		if p == nil {
			return errors.New("a plan without state")
		}
		limits = append(limits, p.Limits)
	}
	for _, m := range limits {
		for name, l := range m {
			if l < 1 {
				return fmt.Errorf("route %q: limit must be ≥ 1", name)
			}
		}
	}
	return nil
}
