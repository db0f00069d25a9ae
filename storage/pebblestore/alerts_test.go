package pebblestore_test

import (
	"errors"
	"testing"

	"github.com/mercury-apm/mercury/storage/alertstore"
	"github.com/mercury-apm/mercury/storage/pebblestore"
	"github.com/mercury-apm/mercury/storage/storetest"
)

func TestAlertStore(t *testing.T) {
	storetest.AlertStore(t, func(t *testing.T) alertstore.Store {
		s, err := pebblestore.OpenAlerts(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestAlertStoreReopens(t *testing.T) {
	dir := t.TempDir()
	s, err := pebblestore.OpenAlerts(dir)
	if err != nil {
		t.Fatal(err)
	}
	a := alertstore.Alert{ID: "a", Key: "k", State: alertstore.StateFiring, Summary: "kept"}
	if _, err := s.CreateAlert(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAlert(t.Context(), "a"); !errors.Is(err, alertstore.ErrClosed) {
		t.Fatalf("read after close: %v, want ErrClosed", err)
	}
	s, err = pebblestore.OpenAlerts(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, err := s.GetAlert(t.Context(), "a"); err != nil || got.Summary != "kept" {
		t.Fatalf("after reopen: %+v %v", got, err)
	}
	if _, err := s.CreateAlert(t.Context(), a); err != nil {
		t.Fatal(err)
	}
}
