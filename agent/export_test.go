package agent

import "github.com/mercury-apm/mercury/agent/spool"

// NewWithFS starts an agent whose spool creates files with open (stalling or failing disks).
func NewWithFS(cfg Config, open func(path string) (spool.File, error)) (*Agent, error) {
	cfg.spoolOpenFile = open
	return New(cfg)
}

// OriginName exposes how a domain travels in tracestate.
var OriginName = originName
