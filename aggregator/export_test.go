package aggregator

// SetHook installs a function called at the named points of a flush ("phase1-intent" after
// the intent commit, "phase1-emitted" after the partials were written, "phase2-stored" after
// the store write), so the crash test can kill a child exactly there.
func SetHook(fn func(point string)) { hook = fn }
