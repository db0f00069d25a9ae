package ship

import "github.com/mercury-apm/mercury/agent/spool"

// Streams the agent spools (agent/spool owns the layout: <root>/<stream>/<%020d seq>.avro).
const (
	StreamSpans      = spool.StreamSpans
	StreamEvents     = spool.StreamEvents
	StreamHeartbeats = spool.StreamHeartbeats
)

// Streams lists every spooled stream.
var Streams = spool.Streams
